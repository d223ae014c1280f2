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

use crate::shared::{lock, now_ms, Command, DataflowId, PeekCommand, PeekReply, Shared, ViewProgress};

/// Records read from one partition per loop iteration: bounds the batch a
/// catching-up source introduces at one time, and so peak memory.
const READ_CHUNK: usize = 20_000;
/// How long an idle worker parks: how often time moves on with nothing to
/// read (new records and commands wake the workers at once).
const IDLE_PARK_MS: u64 = 10;
/// Reads whose records the views have not yet processed, per dataflow:
/// while this many are in flight the sources wait. Without it a replay
/// reads the log faster than the dataflow computes, and the backlog (all
/// of history, on a replay) piles up in the dataflow's queues.
const MAX_READS_IN_FLIGHT: usize = 2;

struct Source {
    table: TablePlan,
    /// For an upsert table, the schema of its key columns: a delete event
    /// carries only those.
    key_schema: Option<Schema>,
    input: SourceInput,
    /// Whether a view of this dataflow reads the table. A job's own table
    /// that only other jobs' views read is still decoded here, so that bad
    /// records reach the dead letters, but not fed: an input that no
    /// operator consumes keeps every record pushed into it (timely hands an
    /// unconsumed batch back to the sender, which resends it with the next).
    feeds: bool,
    /// Owned partitions and the next offset to read.
    partitions: Vec<(u32, u64)>,
    ingested: IntCounter,
    rejected: IntCounter,
}

impl Source {
    fn new(table: TablePlan, input: SourceInput, feeds: bool, partitions: Vec<(u32, u64)>, shared: &Shared) -> Source {
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
            feeds,
            partitions,
        }
    }

    /// Decodes one record and feeds it to the input; the reason if it does
    /// not fit the table. Key columns are NOT NULL, so decoding rejects a
    /// record without its key.
    fn feed(&mut self, payload: &[u8], seq: u64) -> Result<(), String> {
        match (&mut self.input, &self.table.primary_key, &self.key_schema) {
            (SourceInput::Append(input), _, _) => {
                let row = decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?;
                if self.feeds {
                    input.update(row, 1);
                }
            }
            (SourceInput::Upsert(input), Some(key_cols), Some(key_schema)) => {
                let update = if is_delete(payload) {
                    let key = decode_json(payload, key_schema).map_err(|e| e.to_string())?;
                    (key, seq, None)
                } else {
                    let row = decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?;
                    (key_cols.iter().map(|&i| row[i].clone()).collect(), seq, Some(row))
                };
                if self.feeds {
                    input.update(update, 1);
                }
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
    /// Per view, this worker's row count (see `RenderedView::rows`).
    rows: Vec<Rc<std::cell::Cell<i64>>>,
    /// Per view, the compaction frontier already allowed (never regresses).
    since: Vec<Tick>,
    /// Ticks at which records were fed and that not every view has passed.
    in_flight: std::collections::VecDeque<Tick>,
}

impl Dataflow {
    /// Whether the sources may read more: forgets the reads every view has
    /// processed, then checks how many are left.
    fn may_read(&mut self) -> bool {
        let done = self
            .views
            .iter_mut()
            .map(|(_, trace)| trace_upper(trace).unwrap_or(Tick::MAX))
            .min()
            .unwrap_or(Tick::MAX);
        while self.in_flight.front().is_some_and(|&t| t < done) {
            self.in_flight.pop_front();
        }
        self.in_flight.len() < MAX_READS_IN_FLIGHT
    }
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
    lock(&shared.worker_threads).push(std::thread::current());
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
                        let feeds = views.iter().any(|v| v.depends_on.contains(&table.name));
                        srcs.push(Source::new(table, input, feeds, partitions, &shared));
                    }
                    let (views, rows): (Vec<_>, Vec<_>) =
                        rendered.views.into_iter().map(|v| ((v.name, v.trace), v.rows)).unzip();
                    {
                        let mut fr = lock(&shared.frontiers);
                        for (name, _) in &views {
                            fr.entry((df, name.clone())).or_insert_with(|| ViewProgress::new(peers));
                        }
                    }
                    let since = vec![0; views.len()];
                    dataflows.insert(
                        df,
                        Dataflow {
                            index: index_before,
                            sources: srcs,
                            views,
                            rows,
                            since,
                            in_flight: Default::default(),
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
            let may_read = d.may_read();
            let mut fed = false;
            for src in d.sources.iter_mut() {
                src.input.advance_to(now);
                let (n, behind) = read_source(&shared, *df, src, now, may_read);
                fed |= n > 0;
                lag += behind;
                src.input.flush();
            }
            if fed && d.in_flight.back() != Some(&now) {
                d.in_flight.push_back(now);
            }
            read_any |= fed;
            lock(&shared.lag).insert((*df, index), lag);
        }

        worker.step_or_park(Some(Duration::from_millis(if read_any { 0 } else { IDLE_PARK_MS })));

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

        // Publish progress; compact each trace as far as readers allow.
        {
            let mut fr = lock(&shared.frontiers);
            for (df, d) in dataflows.iter_mut() {
                for (((name, trace), since), rows) in d.views.iter_mut().zip(d.since.iter_mut()).zip(&d.rows) {
                    let Some(progress) = fr.get_mut(&(*df, name.clone())) else {
                        continue;
                    };
                    progress.uppers[index] = trace_upper(trace);
                    progress.rows[index] = rows.get();
                    // Peeks are answered from this worker's trace as of their
                    // time; their readers hold it, so the bound covers them.
                    if let Some(bound) = progress.compaction_bound() {
                        if bound > *since {
                            *since = bound;
                            allow_compaction(trace, bound);
                        }
                    }
                }
            }
        }

        pending_peeks.retain(|p| !try_answer(&shared, &mut dataflows, p));
    }
}

/// Reads new records of `src`'s partitions into its input, at `now` (when
/// `may_read`; else only measures how far behind it is).
/// Returns (records read, records still behind the log's end).
fn read_source(shared: &Shared, df: DataflowId, src: &mut Source, now: Tick, may_read: bool) -> (usize, u64) {
    let topic = src.table.topic().to_string();
    let mut read = 0;
    let mut behind = 0;
    for p in 0..src.partitions.len() {
        let (partition, next) = src.partitions[p];
        let end = shared.log.end_offset(&topic, partition);
        let mut new_next = next;
        if may_read && next < end {
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
