//! The timely worker runtime: executes the sequenced commands, feeds the
//! sources from the event log, and answers peeks from the arrangements.
//!
//! Every worker runs the same loop. Commands reach worker 0 over a channel
//! and are broadcast in one order to all workers by timely's `Sequencer`
//! (DESIGN.md §3), so every worker builds the same dataflows in the same
//! order, and a peek is answered after the install it follows.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use timely::synchronization::Sequencer;
use weir_connectors::dead_letters::{DeadLetter, Position};
use weir_connectors::decode::{decode_json, is_delete};
use weir_dataflows::plan::TablePlan;
use weir_dataflows::render::{render_job, ErrorSink, SourceInput, ViewTrace};
use weir_operators::repr::{Schema, Tick};
use weir_queries::peek::{allow_compaction, peek, trace_upper};

use crate::shared::{lock, now_ms, Command, DataflowId, PeekCommand, PeekReply, Shared};

/// Records read from one partition per loop iteration: bounds the batch a
/// catching-up source introduces at one time, and so peak memory.
const READ_CHUNK: usize = 20_000;
/// History kept in view traces behind their frontier, so that a read whose
/// time was chosen a moment ago is still exact.
const COMPACTION_LAG_MS: Tick = 10_000;

struct Source {
    table: TablePlan,
    /// For an upsert table, the schema of its key columns: a delete event
    /// carries only those.
    key_schema: Option<Schema>,
    input: SourceInput,
    /// Owned partitions and the next offset to read.
    partitions: Vec<(u32, u64)>,
    ingested: IntCounter,
    rejected: IntCounter,
}

impl Source {
    fn new(table: TablePlan, input: SourceInput, partitions: Vec<(u32, u64)>, shared: &Shared) -> Source {
        let key_schema = table.primary_key.as_ref().map(|cols| Schema {
            columns: cols.iter().map(|&i| table.schema.columns[i].clone()).collect(),
        });
        let name = [table.name.as_str()];
        Source {
            ingested: shared.metrics.ingested.with_label_values(&name),
            rejected: shared.metrics.dead_letters.with_label_values(&name),
            table,
            key_schema,
            input,
            partitions,
        }
    }

    /// Decodes one record and feeds it to the input; the reason if it does
    /// not fit the table. Key columns are NOT NULL, so decoding rejects a
    /// record without its key.
    fn feed(&mut self, payload: &[u8], seq: u64) -> Result<(), String> {
        match (&mut self.input, &self.table.primary_key, &self.key_schema) {
            (SourceInput::Append(input), _, _) => {
                input.update(decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?, 1);
            }
            (SourceInput::Upsert(input), Some(key_cols), Some(key_schema)) => {
                let update = if is_delete(payload) {
                    let key = decode_json(payload, key_schema).map_err(|e| e.to_string())?;
                    (key, seq, None)
                } else {
                    let row = decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?;
                    (key_cols.iter().map(|&i| row[i].clone()).collect(), seq, Some(row))
                };
                input.update(update, 1);
            }
            (SourceInput::Upsert(_), _, _) => return Err("upsert input for a table without a key".into()),
        }
        self.ingested.inc();
        Ok(())
    }
}

struct Dataflow {
    index: usize,
    sources: Vec<Source>,
    views: Vec<(String, ViewTrace)>,
    /// Per view, the compaction frontier already allowed (never regresses).
    since: Vec<Tick>,
}

/// Starts `workers` timely workers on their own threads.
pub fn start(
    shared: Arc<Shared>,
    workers: usize,
    commands: std::sync::mpsc::Receiver<Command>,
) -> std::thread::JoinHandle<Result<(), String>> {
    let commands = Arc::new(Mutex::new(Some(commands)));
    std::thread::Builder::new()
        .name("weir-timely".into())
        .spawn(move || {
            let guards = timely::execute(timely::Config::process(workers), move |worker| {
                let rx = if worker.index() == 0 {
                    lock(&commands).take()
                } else {
                    None
                };
                run_worker(worker, Arc::clone(&shared), rx);
            })?;
            for r in guards.join() {
                r?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("cannot spawn the timely thread: {e}"))
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: Arc<Shared>,
    commands: Option<std::sync::mpsc::Receiver<Command>>,
) {
    let index = worker.index();
    let peers = worker.peers();
    let mut sequencer: Sequencer<Command> = Sequencer::new(worker, Instant::now());
    let mut dataflows: HashMap<DataflowId, Dataflow> = HashMap::new();
    let mut pending_peeks: Vec<PeekCommand> = Vec::new();
    let errors: ErrorSink = Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = shared.log.clone();
    let mut last_tick: Tick = 0;
    let mut shutting_down = false;

    loop {
        if let Some(rx) = &commands {
            while let Ok(cmd) = rx.try_recv() {
                sequencer.push(cmd);
            }
        }
        for cmd in sequencer.by_ref() {
            match cmd {
                Command::Install {
                    df,
                    job,
                    sources,
                    views,
                    imports,
                } => {
                    let mut import_traces = HashMap::new();
                    for (view, from) in &imports {
                        if let Some(t) = dataflows
                            .get(from)
                            .and_then(|d| d.views.iter().find(|(n, _)| n == view))
                        {
                            import_traces.insert(view.clone(), t.1.clone());
                        }
                    }
                    let sink = Rc::clone(&errors);
                    let index_before = worker.next_dataflow_index();
                    let rendered = worker.dataflow_named(&format!("job {job}"), |scope| {
                        render_job(scope, &sources, &views, &mut import_traces, &sink)
                    });
                    let mut srcs = Vec::new();
                    for (name, input) in rendered.sources {
                        let Some(table) = sources.iter().find(|t| t.name == name).cloned() else {
                            continue;
                        };
                        let parts = log.topic(table.topic()).map(|t| t.partitions).unwrap_or(0);
                        let partitions = (0..parts)
                            .filter(|p| *p as usize % peers == index)
                            .map(|p| (p, 0))
                            .collect();
                        srcs.push(Source::new(table, input, partitions, &shared));
                    }
                    let views = rendered
                        .views
                        .into_iter()
                        .map(|v| (v.name, v.trace))
                        .collect::<Vec<_>>();
                    {
                        let mut fr = lock(&shared.frontiers);
                        for (name, _) in &views {
                            fr.entry((df, name.clone())).or_insert_with(|| vec![None; peers]);
                        }
                    }
                    let since = vec![0; views.len()];
                    dataflows.insert(
                        df,
                        Dataflow {
                            index: index_before,
                            sources: srcs,
                            views,
                            since,
                        },
                    );
                }
                Command::Drop { df } => {
                    if let Some(d) = dataflows.remove(&df) {
                        drop(d.sources);
                        drop(d.views);
                        worker.drop_dataflow(d.index);
                    }
                    lock(&shared.frontiers).retain(|(d, _), _| *d != df);
                    lock(&shared.lag).retain(|(d, _), _| *d != df);
                    lock(&shared.positions).retain(|(d, _, _), _| *d != df);
                }
                // Answered at once when possible: a Drop that follows in the
                // same round must not strand a read that was already complete.
                Command::Peek(p) => {
                    if !try_answer(&shared, &mut dataflows, &p) {
                        pending_peeks.push(p);
                    }
                }
                Command::Shutdown => shutting_down = true,
            }
        }
        if shutting_down {
            for (_, d) in dataflows.drain() {
                drop(d.sources);
                drop(d.views);
                worker.drop_dataflow(d.index);
            }
            return;
        }

        // Time moves on with the clock, also when idle, so frontiers always
        // advance (DESIGN.md §2). It never runs ahead of the clock: a worker
        // that loops faster than once a millisecond keeps its tick, else its
        // records would carry future ticks that no read could reach until the
        // other workers' clocks got there.
        let now = now_ms().max(last_tick);
        last_tick = now;
        let mut read_any = false;
        for (df, d) in dataflows.iter_mut() {
            let mut lag = 0u64;
            for src in d.sources.iter_mut() {
                src.input.advance_to(now);
                let (n, behind) = read_source(&shared, *df, src, now);
                read_any |= n > 0;
                lag += behind;
                src.input.flush();
            }
            lock(&shared.lag).insert((*df, index), lag);
        }

        worker.step_or_park(Some(Duration::from_millis(if read_any { 0 } else { 2 })));

        // Evaluation errors of views → dead letters.
        let errs: Vec<_> = errors.borrow_mut().drain(..).collect();
        if !errs.is_empty() {
            let tx = lock(&shared.dead_letters).clone();
            for (view, reason, row, diff) in errs {
                if diff <= 0 {
                    continue;
                }
                shared.metrics.dead_letters.with_label_values(&[view.as_str()]).inc();
                let payload = format!("{row:?}");
                let _ = tx.send(DeadLetter {
                    id: format!("view:{view}:{reason}:{payload}"),
                    source: view,
                    position: None,
                    payload,
                    reason,
                    at_ms: now as i64,
                });
            }
        }

        // Publish progress; allow compaction behind it.
        {
            let mut fr = lock(&shared.frontiers);
            for (df, d) in dataflows.iter_mut() {
                for ((name, trace), since) in d.views.iter_mut().zip(d.since.iter_mut()) {
                    let upper = trace_upper(trace);
                    if let Some(slot) = fr.get_mut(&(*df, name.clone())) {
                        slot[index] = upper;
                    }
                    if let Some(u) = upper {
                        let oldest_peek = pending_peeks
                            .iter()
                            .filter(|p| p.df == *df && &p.view == name)
                            .map(|p| p.as_of)
                            .min()
                            .unwrap_or(Tick::MAX);
                        let target = u.saturating_sub(COMPACTION_LAG_MS).min(oldest_peek);
                        if target > *since {
                            *since = target;
                            allow_compaction(trace, target);
                        }
                    }
                }
            }
        }

        pending_peeks.retain(|p| !try_answer(&shared, &mut dataflows, p));
    }
}

/// Reads new records of `src`'s partitions into its input, at `now`.
/// Returns (records read, records still behind the log's end).
fn read_source(shared: &Shared, df: DataflowId, src: &mut Source, now: Tick) -> (usize, u64) {
    let topic = src.table.topic().to_string();
    let mut read = 0;
    let mut behind = 0;
    for p in 0..src.partitions.len() {
        let (partition, next) = src.partitions[p];
        let end = shared.log.end_offset(&topic, partition);
        let mut new_next = next;
        if next < end {
            let records = match shared.log.read(&topic, partition, next, READ_CHUNK) {
                Ok(r) => r,
                Err(_) => continue,
            };
            for rec in &records {
                read += 1;
                if let Err(reason) = src.feed(&rec.payload, rec.seq) {
                    src.rejected.inc();
                    let _ = lock(&shared.dead_letters).send(DeadLetter {
                        id: format!("{}:{}:{}:{}", src.table.name, topic, partition, rec.offset),
                        source: src.table.name.clone(),
                        position: Some(Position {
                            topic: topic.clone(),
                            partition,
                            offset: rec.offset,
                        }),
                        payload: String::from_utf8_lossy(&rec.payload).into_owned(),
                        reason,
                        at_ms: now as i64,
                    });
                }
            }
            if let Some(last) = records.last() {
                new_next = last.offset + 1;
                src.partitions[p].1 = new_next;
            }
        }
        shared.record_position(df, &topic, partition, new_next, now);
        behind += end.saturating_sub(new_next);
    }
    (read, behind)
}

/// Answers a peek if the view is complete through its time; returns false
/// to try again after the next step.
fn try_answer(shared: &Shared, dataflows: &mut HashMap<DataflowId, Dataflow>, p: &PeekCommand) -> bool {
    let reply = |rows| {
        if let Some(tx) = lock(&shared.peek_replies).get(&p.id) {
            let _ = tx.send(PeekReply { rows });
        }
    };
    let Some(trace) = dataflows
        .get_mut(&p.df)
        .and_then(|d| d.views.iter_mut().find(|(n, _)| *n == p.view))
        .map(|(_, t)| t)
    else {
        reply(Err(format!("view {} is no longer installed", p.view)));
        return true;
    };
    match trace_upper(trace) {
        Some(u) if u > p.as_of => {
            let mut rows = Vec::new();
            peek(trace, p.as_of, p.key.as_ref(), &mut rows);
            reply(Ok(rows));
            true
        }
        Some(_) => false,
        None => {
            reply(Err(format!("view {} is closed", p.view)));
            true
        }
    }
}
