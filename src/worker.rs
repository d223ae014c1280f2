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
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::synchronization::Sequencer;
use weir_connectors::dead_letters::{DeadLetter, Position};
use weir_connectors::decode::{decode_json, is_delete};
use weir_connectors::kafka::{decode_key, Mirrored, MAX_MESSAGE_BYTES};
use weir_connectors::log::LogRecord;
use weir_connectors::sink::SinkMsg;
use weir_dataflows::plan::{SinkPlan, TablePlan};
use weir_dataflows::render::{render_job, ErrorSink, SinkOutput, SourceInput, ViewTrace};
use weir_operators::cep::CepStats;
use weir_operators::repr::{Row, Schema, Tick};
use weir_operators::sink::Delivery;
use weir_queries::peek::{allow_compaction, peek, trace_upper};

use crate::shared::{
    lock, now_ms, sink_key, Command, DataflowId, Feeding, PeekCommand, PeekReply, Shared, ViewProgress,
};

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
    /// Owned partitions: (partition, next offset to read, the time the last
    /// record read was fed at). The partition's records come in tick order.
    partitions: Vec<(u32, u64, Tick)>,
    /// The topic's partitions known so far: a topic may gain partitions (a
    /// Kafka source's mirror grows with its topic), which are then owned as
    /// the first ones were.
    known_partitions: u32,
    /// For an upsert table, its schema with the key columns nullable: the
    /// value of a Kafka record whose key gives them.
    value_schema: Option<Schema>,
    /// For a Kafka table: its topic. The records are then mirrored Kafka
    /// records ([`Mirrored`]), and dead letters name Kafka positions.
    kafka_topic: Option<String>,
    /// Records appended before this are not read (`'auto.offset.reset' =
    /// 'latest'`).
    skip_before: Tick,
    /// (this worker, workers): a worker owns the partitions `p` with
    /// `p % workers == this worker`.
    owner: (usize, usize),
    ingested: IntCounter,
    rejected: IntCounter,
}

impl Source {
    #[allow(clippy::too_many_arguments)]
    fn new(
        table: TablePlan,
        input: SourceInput,
        feeds: bool,
        owner: (usize, usize),
        skip_before: Tick,
        known_partitions: u32,
        shared: &Shared,
    ) -> Source {
        let key_schema = table.primary_key.as_ref().map(|cols| Schema {
            columns: cols.iter().map(|&i| table.schema.columns[i].clone()).collect(),
        });
        let value_schema = table.primary_key.as_ref().map(|cols| {
            let mut s = table.schema.clone();
            for &i in cols {
                s.columns[i].nullable = true;
            }
            s
        });
        let name = [table.name.as_str()];
        Source {
            value_schema,
            ingested: shared.metrics.ingested.with_label_values(&name),
            rejected: shared.metrics.dead_letters.with_label_values(&name),
            key_schema,
            input,
            feeds,
            partitions: Vec::new(),
            known_partitions: 0,
            kafka_topic: table.kafka().map(|k| k.topic.clone()),
            table,
            owner,
            skip_before,
        }
        .with_partitions(known_partitions, shared)
    }

    /// Takes up the topic's partitions `known_partitions..count` that are
    /// this worker's, read from `skip_before` on.
    fn with_partitions(mut self, count: u32, shared: &Shared) -> Source {
        self.discover(count, shared);
        self
    }

    fn discover(&mut self, count: u32, shared: &Shared) {
        let (index, peers) = self.owner;
        for p in self.known_partitions..count {
            if p as usize % peers == index {
                let from = shared.first_offset_from(self.table.topic(), p, self.skip_before);
                self.partitions.push((p, from, 0));
            }
        }
        self.known_partitions = self.known_partitions.max(count);
    }

    /// Feeds one record of the log; for a Kafka table, a mirrored record.
    /// The reason and the position to report if it does not fit the table.
    fn feed_record(&mut self, partition: u32, rec: &LogRecord, at: Tick) -> Result<(), (Position, String, String)> {
        let Some(kafka_topic) = &self.kafka_topic else {
            return self.feed(&rec.payload, None, rec.seq, at).map_err(|reason| {
                let position = Position {
                    topic: self.table.topic().to_string(),
                    partition,
                    offset: rec.offset,
                };
                (position, String::from_utf8_lossy(&rec.payload).into_owned(), reason)
            });
        };
        let Some(m) = Mirrored::decode(&rec.payload) else {
            let position = Position {
                topic: self.table.topic().to_string(),
                partition,
                offset: rec.offset,
            };
            return Err((position, String::new(), "unreadable mirrored record".into()));
        };
        let position = Position {
            topic: kafka_topic.clone(),
            partition,
            offset: m.offset.max(0) as u64,
        };
        let shown = |m: &Mirrored| String::from_utf8_lossy(m.value.unwrap_or_default()).into_owned();
        if let Some(size) = m.oversized {
            let reason = format!("oversized: the record has {size} bytes, more than {MAX_MESSAGE_BYTES}");
            return Err((position, shown(&m), reason));
        }
        let key = match (m.key, &self.key_schema) {
            (Some(k), Some(schema)) => {
                Some(decode_key(k, schema).map_err(|e| (position.clone(), shown(&m), e.to_string()))?)
            }
            _ => None,
        };
        match m.value {
            Some(value) => self.feed(value, key, rec.seq, at),
            None if self.table.primary_key.is_none() => {
                Err("a null value (tombstone) deletes a key only in a table with a PRIMARY KEY".into())
            }
            None => match key {
                Some(key) => self.delete(key, rec.seq, at),
                None => Err("a tombstone needs a key".into()),
            },
        }
        .map_err(|reason| (position, shown(&m), reason))
    }

    /// Decodes one record and feeds it to the input; the reason if it does
    /// not fit the table. Key columns are NOT NULL, so decoding rejects a
    /// record without its key. `key`, a Kafka record's key, gives an upsert
    /// table's key columns (over the value's).
    fn feed(&mut self, payload: &[u8], key: Option<Row>, seq: u64, at: Tick) -> Result<(), String> {
        match (&mut self.input, &self.table.primary_key, &self.key_schema) {
            (SourceInput::Append(input), _, _) => {
                let row = decode_json(payload, &self.table.schema).map_err(|e| e.to_string())?;
                if self.feeds {
                    let at = at.max(*input.time());
                    input.update_at(row, at, 1);
                }
            }
            (SourceInput::Upsert(_), Some(_), Some(key_schema)) if is_delete(payload) => {
                let key = decode_json(payload, key_schema).map_err(|e| e.to_string())?;
                return self.delete(key, seq, at);
            }
            (SourceInput::Upsert(input), Some(key_cols), Some(_)) => {
                // With the record's key, the value need not repeat it.
                let schema = match (&key, &self.value_schema) {
                    (Some(_), Some(s)) => s,
                    _ => &self.table.schema,
                };
                let mut row = decode_json(payload, schema).map_err(|e| e.to_string())?;
                let key = match key {
                    Some(key) => {
                        for (&i, d) in key_cols.iter().zip(&key) {
                            row[i] = d.clone();
                        }
                        key
                    }
                    None => key_cols.iter().map(|&i| row[i].clone()).collect(),
                };
                if self.feeds {
                    let at = at.max(*input.time());
                    input.update_at((key, seq, Some(row)), at, 1);
                }
            }
            (SourceInput::Upsert(_), _, _) => return Err("upsert input for a table without a key".into()),
        }
        self.ingested.inc();
        Ok(())
    }

    /// Deletes a key of an upsert table.
    fn delete(&mut self, key: Row, seq: u64, at: Tick) -> Result<(), String> {
        let SourceInput::Upsert(input) = &mut self.input else {
            return Err("a delete needs a table with a PRIMARY KEY".into());
        };
        if self.feeds {
            let at = at.max(*input.time());
            input.update_at((key, seq, None), at, 1);
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
    /// Per view, the state gauges of its pattern rules.
    patterns: Vec<Vec<CepStats>>,
    /// Per view, the upper of its trace (see `RenderedView::probe`).
    uppers: Vec<ProbeHandle<Tick>>,
    /// Per view, the compaction frontier already allowed (never regresses).
    since: Vec<Tick>,
    /// How it times records: those appended before its install are
    /// history (see [`Feeding`]).
    feeding: Feeding,
    /// Per read, the latest time a record was fed at, until every view has
    /// passed it.
    in_flight: Vec<Tick>,
}

impl Dataflow {
    /// Whether the sources may read more: forgets the reads every view has
    /// processed, then checks how many are left.
    fn may_read(&mut self) -> bool {
        let done = self
            .uppers
            .iter()
            .map(|p| upper(p).unwrap_or(Tick::MAX))
            .min()
            .unwrap_or(Tick::MAX);
        // Reads are not in time order (each source's records have their own
        // ticks), so any of them may be done.
        self.in_flight.retain(|&t| t >= done);
        // A read at a time the inputs have not passed cannot complete until
        // more is read (many records may share a time): only the others count.
        let frontier = self.sources.iter().map(|s| s.input.time()).min().unwrap_or(Tick::MAX);
        self.in_flight.iter().filter(|&&t| t < frontier).count() < MAX_READS_IN_FLIGHT
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
                    feeding,
                    sinks,
                    skip_before,
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
                    // The writers of the job's sinks, on worker 0 (where the
                    // changes are delivered).
                    let mut senders: HashMap<String, std::sync::mpsc::Sender<SinkMsg>> = HashMap::new();
                    if index == 0 {
                        let writers = lock(&shared.sinks);
                        for s in &sinks {
                            if let Some(w) = writers.get(&sink_key(s)) {
                                senders.insert(s.name.clone(), w.sender());
                            }
                        }
                    }
                    let mut sink_output = |s: &SinkPlan| -> SinkOutput {
                        let Some(tx) = senders.remove(&s.name) else {
                            return Box::new(|_| {});
                        };
                        Box::new(move |d| {
                            let msg = match d {
                                Delivery::Changes(as_of, changes) => SinkMsg::Changes {
                                    version: df,
                                    as_of,
                                    changes,
                                },
                                Delivery::Frontier(frontier) => SinkMsg::Frontier { version: df, frontier },
                            };
                            // A stopped writer (its sink dropped) takes nothing.
                            let _ = tx.send(msg);
                        })
                    };
                    let rendered = worker.dataflow_named(&format!("job {job}"), |scope| {
                        render_job(
                            scope,
                            &sources,
                            &views,
                            &mut import_traces,
                            &sink,
                            &sinks,
                            &mut sink_output,
                        )
                    });
                    let mut srcs = Vec::new();
                    for (name, input) in rendered.sources {
                        let Some(table) = sources.iter().find(|t| t.name == name).cloned() else {
                            continue;
                        };
                        let parts = log.partitions(table.topic());
                        let feeds = views.iter().any(|v| v.depends_on.contains(&table.name));
                        srcs.push(Source::new(
                            table,
                            input,
                            feeds,
                            (index, peers),
                            skip_before,
                            parts,
                            &shared,
                        ));
                    }
                    let mut views = Vec::new();
                    let mut rows = Vec::new();
                    let mut uppers = Vec::new();
                    let mut patterns = Vec::new();
                    for v in rendered.views {
                        views.push((v.name, v.trace));
                        rows.push(v.rows);
                        uppers.push(v.probe);
                        patterns.push(v.patterns);
                    }
                    {
                        let mut fr = lock(&shared.frontiers);
                        for (name, _) in &views {
                            fr.entry((df, name.clone())).or_insert_with(|| ViewProgress::new(peers));
                        }
                    }
                    dataflows.insert(
                        df,
                        Dataflow {
                            index: index_before,
                            sources: srcs,
                            since: vec![0; views.len()],
                            feeding,
                            views,
                            rows,
                            patterns,
                            uppers,
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
                    lock(&shared.read_through).retain(|(d, _), _| *d != df);
                    lock(&shared.since).remove(&df);
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

        // Time is the log's: each record is fed at the tick it was appended
        // at, and an input moves on as far as its topic's history is final,
        // also when idle, so frontiers always advance (DESIGN.md §2).
        let now = now_ms();
        // More is there to read right now: step without parking. Otherwise
        // park until an append or a command wakes the worker (timely does
        // not park while operators have work): spinning would take the
        // cores that a broker or the producers on the same machine need.
        let mut more_to_read = false;
        for (df, d) in dataflows.iter_mut() {
            let mut lag = 0u64;
            let may_read = d.may_read();
            let mut fed_until = None;
            for src in d.sources.iter_mut() {
                let read = read_source(&shared, src, &d.feeding, now, may_read);
                if read.records > 0 {
                    fed_until = fed_until.max(Some(read.fed_until));
                }
                lag += read.behind;
                let t = read.frontier.max(src.input.time());
                src.input.advance_to(t);
                src.input.flush();
            }
            if let Some(t) = fed_until {
                if !d.in_flight.contains(&t) {
                    d.in_flight.push(t);
                }
                let mut through = lock(&shared.read_through);
                let e = through.entry((*df, index)).or_default();
                *e = (*e).max(t);
            }
            more_to_read |= may_read && lag > 0;
            lock(&shared.lag).insert((*df, index), lag);
        }

        worker.step_or_park(Some(Duration::from_millis(if more_to_read { 0 } else { IDLE_PARK_MS })));

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
                for (i, (name, trace)) in d.views.iter_mut().enumerate() {
                    let Some(progress) = fr.get_mut(&(*df, name.clone())) else {
                        continue;
                    };
                    let since = &mut d.since[i];
                    progress.uppers[index] = upper(&d.uppers[i]);
                    progress.rows[index] = d.rows[i].get();
                    if !d.patterns[i].is_empty() {
                        let live: usize = d.patterns[i].iter().map(|s| s.partial_matches.get()).sum();
                        progress.partial_matches.get_or_insert_with(|| vec![0; peers])[index] = live as i64;
                    }
                    // Peeks are answered from this worker's trace as of their
                    // time; their readers hold it, so the bound covers them.
                    if let Some(bound) = progress.compaction_bound(d.feeding.since) {
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

/// The frontier a probe has seen (`None`: closed).
fn upper(probe: &ProbeHandle<Tick>) -> Option<Tick> {
    probe.with_frontier(|f| f.first().copied())
}

/// What one pass over a source's partitions did.
struct Read {
    records: usize,
    /// The latest time a record was fed at.
    fed_until: Tick,
    /// Records still behind the log's end.
    behind: u64,
    /// The time the source's input may move on to: no record it will still
    /// read is fed before it.
    frontier: Tick,
}

/// Reads new records of `src`'s partitions into its input (when
/// `may_read`; else only measures how far behind it is).
fn read_source(shared: &Shared, src: &mut Source, feeding: &Feeding, now: Tick, may_read: bool) -> Read {
    let topic = src.table.topic().to_string();
    // Before the end offsets: records past them come at or after `sealed`.
    let sealed = feeding.time(shared.log.sealed(&topic));
    // After `sealed`: a partition added later holds only records appended
    // after it.
    let count = shared.log.partitions(&topic);
    if count > src.known_partitions {
        src.discover(count, shared);
    }
    let mut out = Read {
        records: 0,
        fed_until: 0,
        behind: 0,
        frontier: Tick::MAX,
    };
    for p in 0..src.partitions.len() {
        let (partition, next, _) = src.partitions[p];
        let end = shared.log.end_offset(&topic, partition);
        if may_read && next < end {
            let records = match shared.log.read(&topic, partition, next, shared.read_chunk) {
                Ok(r) => r,
                Err(_) => continue,
            };
            for rec in &records {
                // The start offset was sought by tick; this only guards
                // against a clock that stepped back since.
                if rec.tick < src.skip_before {
                    continue;
                }
                out.records += 1;
                let at = feeding.time(rec.tick);
                out.fed_until = out.fed_until.max(at);
                src.partitions[p].2 = at;
                if let Err((position, payload, reason)) = src.feed_record(partition, rec, at) {
                    src.rejected.inc();
                    let _ = lock(&shared.dead_letters).send(DeadLetter {
                        id: format!(
                            "{}:{}:{}:{}",
                            src.table.name, position.topic, position.partition, position.offset
                        ),
                        source: src.table.name.clone(),
                        position: Some(position),
                        payload,
                        reason,
                        at_ms: now as i64,
                    });
                }
            }
            if let Some(last) = records.last() {
                src.partitions[p].1 = last.offset + 1;
            }
        }
        let (_, next, last_fed) = src.partitions[p];
        out.behind += end.saturating_sub(next);
        // Caught up: what comes next is appended after `sealed`. Behind: the
        // next record is fed no earlier than the last one read.
        let frontier = if next >= end { sealed } else { last_fed };
        out.frontier = out.frontier.min(frontier);
    }
    if src.partitions.is_empty() {
        out.frontier = sealed;
    }
    out
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
