//! The `MATCH_RECOGNIZE` timely operator: rows ordered by event time behind
//! a watermark, partitions routed to workers, matches and time-outs emitted
//! at the tick the watermark decides them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::rc::Rc;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, OkErr};
use timely::progress::operate::FrontierInterest;

use serde::{Deserialize, Serialize};

use super::clock::{event_time, Clock, ClockSnapshot, Watermark};
use super::matcher::{Emitted, Matcher, Partition, PartitionSnapshot, Rule};
use crate::capture::{Capture, Captured};
use crate::repr::{format_timestamp, Datum, Diff, FastMap, Row, Tick};

/// One entry of a rule's snapshot: the clock (every worker writes the same),
/// or one partition.
#[derive(Debug, Serialize, Deserialize)]
pub enum PatternEntry {
    Clock { clock: ClockSnapshot, watermark: i64 },
    Partition { key: Row, state: PartitionSnapshot },
}

/// A rule's snapshot state: the capture the snapshot reads, and the entries
/// of a snapshot to restore (all of them: each worker keeps its partitions).
#[derive(Clone, Default)]
pub struct PatternState {
    pub capture: Capture,
    pub restore: Vec<Vec<u8>>,
}

/// Where a rule's input rows are keyed and ordered.
#[derive(Clone, Debug)]
pub struct Layout {
    pub partition_by: Vec<usize>,
    /// The event-time column (TIMESTAMP, or BIGINT milliseconds).
    pub order_by: usize,
    pub order_by_name: String,
    pub watermark: Watermark,
}

/// The worker a partition's rows go to, from its key's datums: the same
/// for a row (its key columns) and for a key (a snapshot's entry), and on
/// every worker.
fn route<'a>(key: impl Iterator<Item = &'a Datum>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed_c0de).build_hasher();
    for d in key {
        d.hash(&mut h);
    }
    h.finish()
}

/// One partition and its key, in the operator's slab. A forgotten
/// partition's slot keeps its allocations (bounded) for the next new key:
/// on a stream of short-lived partitions, a new one then allocates only
/// its key in the index.
struct Slot {
    /// Whether the slot holds a partition (else it is free).
    live: bool,
    key: Row,
    partition: Partition,
    /// The filing of its current wake-up in [`State::wakes`]: older
    /// entries of the heap for this slot are stale.
    filed: u64,
}

/// The per-worker state of the operator.
struct State<R> {
    matcher: Matcher<R>,
    layout: Layout,
    clock: Clock,
    /// Partitions by key, as indexes into `slots`.
    index: FastMap<Row, usize>,
    slots: Vec<Slot>,
    /// Slots free for the next new partition.
    free: Vec<usize>,
    /// Partitions by the watermark at which they have work: (wake, filing,
    /// slot), earliest first. An entry is live while its slot's partition
    /// is still filed under it (`Slot::filed`); a re-filed or forgotten
    /// partition leaves a stale entry, skipped when it comes up.
    wakes: BinaryHeap<Reverse<(i64, u64, usize)>>,
    filings: u64,
    /// A partition key being looked up, reused.
    key_buf: Row,
    /// Partitions with a match in progress.
    attempts: usize,
    /// Output waiting to be sent, with the tick it belongs to.
    outbox: Vec<(Tick, Emitted)>,
    /// The watermark partitions were last worked at.
    watermark: i64,
}

impl<R: Rule> State<R> {
    /// The state as snapshot entries (see [`PatternEntry`]).
    fn snapshot(&self) -> Captured {
        let encode =
            |e: &PatternEntry| bincode::serialize(e).map_err(|e| format!("cannot encode a pattern's state: {e}"));
        let mut out = vec![encode(&PatternEntry::Clock {
            clock: self.clock.snapshot(),
            watermark: self.watermark,
        })?];
        for slot in self.slots.iter().filter(|s| s.live) {
            out.push(encode(&PatternEntry::Partition {
                key: slot.key.clone(),
                state: slot.partition.snapshot(),
            })?);
        }
        Ok(out)
    }

    /// Restores the clock and this worker's partitions (those whose key
    /// routes here) from a snapshot's entries.
    fn restore(&mut self, entries: &[Vec<u8>], index: usize, peers: usize) -> Result<(), String> {
        let mut clock_done = false;
        for bytes in entries {
            let entry: PatternEntry =
                bincode::deserialize(bytes).map_err(|e| format!("a pattern snapshot entry does not decode: {e}"))?;
            match entry {
                PatternEntry::Clock { clock, watermark } => {
                    if !clock_done {
                        self.clock.restore(clock);
                        self.watermark = watermark;
                        clock_done = true;
                    }
                }
                PatternEntry::Partition { key, state } => {
                    if (route(key.iter()) % peers.max(1) as u64) as usize != index {
                        continue;
                    }
                    let (p, _) = Partition::restore(state, &self.matcher, self.watermark);
                    if p.in_progress() {
                        self.attempts += 1;
                    }
                    let slot = self.slot_of(&key);
                    self.slots[slot].partition = p;
                    self.reindex(slot);
                }
            }
        }
        Ok(())
    }

    /// The slot of the partition with this key, a new empty one if there
    /// is none.
    fn slot_of(&mut self, key: &[Datum]) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i];
                slot.live = true;
                // No heap entry is filed under 0.
                slot.filed = 0;
                slot.key.clear();
                slot.key.extend_from_slice(key);
                i
            }
            None => {
                self.slots.push(Slot {
                    live: true,
                    key: key.to_vec(),
                    partition: Partition::default(),
                    filed: 0,
                });
                self.slots.len() - 1
            }
        };
        self.index.insert(key.to_vec(), i);
        i
    }

    /// The slot of the partition `row` belongs to.
    fn slot_of_row(&mut self, row: &Row) -> usize {
        let mut key = std::mem::take(&mut self.key_buf);
        key.clear();
        key.extend(self.layout.partition_by.iter().map(|&i| row[i].clone()));
        let slot = self.slot_of(&key);
        self.key_buf = key;
        slot
    }

    /// Re-files a partition under the watermark at which it next has work,
    /// and forgets it when it holds nothing.
    fn reindex(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i).filter(|s| s.live) else {
            return;
        };
        let p = &mut slot.partition;
        let forget = p.forgettable(&self.matcher, self.watermark);
        let wake = if forget { None } else { p.next_wake(&self.matcher) };
        if p.wake != wake {
            p.wake = wake;
            self.filings += 1;
            slot.filed = self.filings;
            if let Some(w) = wake {
                self.wakes.push(Reverse((w, self.filings, i)));
            }
        }
        if forget {
            slot.live = false;
            slot.partition.reset();
            self.index.remove(&slot.key);
            self.free.push(i);
        }
    }

    /// The earliest live wake-up, dropping the stale entries before it.
    fn first_wake(&mut self) -> Option<i64> {
        while let Some(&Reverse((wake, filed, i))) = self.wakes.peek() {
            if self.slots.get(i).is_some_and(|s| s.live && s.filed == filed) {
                return Some(wake);
            }
            self.wakes.pop();
        }
        None
    }

    /// Queues output to be emitted at tick `t`.
    fn emit(&mut self, t: Tick, out: Emitted) {
        if !out.rows.is_empty() || !out.errors.is_empty() {
            self.outbox.push((t, out));
        }
    }

    /// Time passes through tick `t` with no rows. What the idle watermark
    /// decides is emitted at the tick the watermark reaches it, not when
    /// the operator happens to notice, so a view read at some `as_of`
    /// holds the same rows however the workers were scheduled.
    fn idle_until(&mut self, t: Tick) {
        let w = self.clock.at(t);
        while let Some(wake) = self.first_wake() {
            if wake > w {
                break;
            }
            let at = self.clock.tick_reaching(wake).map_or(t, |r| r.min(t));
            let mut out = Emitted::default();
            self.work_first(self.clock.at(at), &mut out);
            self.emit(at, out);
        }
    }

    /// One complete tick: its rows, and the largest event time any worker
    /// saw at it.
    fn tick(&mut self, now: Tick, rows: Vec<(Row, Diff)>, max_ts: Option<i64>) {
        self.idle_until(now);
        let mut out = Emitted::default();
        let before = self.clock.at(now);
        for (row, diff) in rows {
            let Some(ts) = event_time(&row, self.layout.order_by) else {
                out.errors
                    .push((format!("event time {} is NULL", self.layout.order_by_name), row));
                continue;
            };
            if diff < 0 {
                out.errors.push((
                    "a pattern's input must be append-only: a row was retracted".to_string(),
                    row,
                ));
                continue;
            }
            if ts < before {
                out.errors.push((
                    format!(
                        "late: event time {} is behind the watermark {} (allowed lateness {} ms)",
                        format_timestamp(ts),
                        format_timestamp(before),
                        self.layout.watermark.lateness_ms
                    ),
                    row,
                ));
                continue;
            }
            let i = self.slot_of_row(&row);
            let p = &mut self.slots[i].partition;
            for _ in 1..diff {
                p.insert(ts, row.clone());
            }
            p.insert(ts, row);
            // Re-filed only when the row moves its wake-up earlier (a
            // partition with rows waiting is never forgotten).
            if p.wake.is_none_or(|w| ts.saturating_add(1) < w) {
                self.reindex(i);
            }
        }
        if let Some(m) = max_ts {
            self.clock.observe(now, m);
        }
        self.watermark = self.watermark.max(self.clock.at(now));
        let w = self.clock.at(now);
        while self.first_wake().is_some_and(|wake| wake <= w) {
            self.work_first(w, &mut out);
        }
        self.emit(now, out);
    }

    /// Works the partition with the earliest wake-up at watermark `w`.
    fn work_first(&mut self, w: i64, out: &mut Emitted) {
        self.watermark = self.watermark.max(w);
        if self.first_wake().is_none() {
            return;
        }
        let Some(Reverse((_, _, i))) = self.wakes.pop() else {
            return;
        };
        if let Some(p) = self.slots.get_mut(i).filter(|s| s.live).map(|s| &mut s.partition) {
            p.wake = None;
            let had = p.in_progress();
            p.advance(&self.matcher, Some(w), out);
            match (had, p.in_progress()) {
                (false, true) => self.attempts += 1,
                (true, false) => self.attempts -= 1,
                _ => {}
            }
        }
        self.reindex(i);
    }

    /// The stream ended: every partition finishes, as if the watermark had
    /// passed everything.
    fn finish(&mut self, t: Tick) {
        let mut out = Emitted::default();
        for slot in self.slots.iter_mut().filter(|s| s.live) {
            slot.partition.advance(&self.matcher, None, &mut out);
        }
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.wakes.clear();
        self.attempts = 0;
        self.emit(t, out);
    }
}

/// Captures every requested state as of a time before `t`, each after the
/// idle work through its time (see [`State::idle_until`]).
fn capture_before<R: Rule>(c: &Capture, state: &mut State<R>, t: Tick) {
    while let Some(at) = c.first_request_before(t) {
        state.idle_until(at);
        c.passed(Some(at.saturating_add(1)), &mut || state.snapshot());
    }
}

/// Output rows of a rule.
pub type Rows<'s> = VecCollection<'s, Tick, Row, Diff>;
/// Rows for the dead letters, with the reason.
pub type Rejects<'s> = VecCollection<'s, Tick, (String, Row), Diff>;

/// A rule's state on this worker, for metrics.
#[derive(Clone, Debug, Default)]
pub struct CepStats {
    /// Partitions with rows waiting for the watermark, a match in progress
    /// or history kept for `PREV` / `MATCH_NUMBER()`.
    pub partitions: Rc<std::cell::Cell<usize>>,
    /// Partitions with a partial match in progress.
    pub partial_matches: Rc<std::cell::Cell<usize>>,
    /// Rows emitted so far (matches, or their rows, and time-outs).
    pub emitted: Rc<std::cell::Cell<u64>>,
}

/// Matches `matcher` over `input` (append-only rows). Returns the output
/// rows, and the rows that could not be matched with the reason (late rows,
/// NULL event times, evaluation errors) for the dead letters.
///
/// Output is emitted at the tick the watermark passes what decides it: a
/// match when no more preferred match can still appear, a time-out when the
/// watermark passes its start plus `WITHIN`.
///
/// With `snapshots`, the state is written down as of each requested time
/// (see [`crate::capture`]), and first restored from its `restore` entries.
pub fn match_recognize<'s, R: Rule>(
    input: VecCollection<'s, Tick, Row, Diff>,
    name: &str,
    layout: Layout,
    matcher: Matcher<R>,
    stats: CepStats,
    snapshots: Option<PatternState>,
) -> (Rows<'s>, Rejects<'s>) {
    let (index, peers) = (input.scope().index(), input.scope().peers());
    let order_by = layout.order_by;
    // Each worker's largest event time per tick, seen by every worker. One
    // operator passes the rows on and takes the marks: reading the input
    // stream twice would copy every row for the second reader.
    let mut builder = OperatorBuilder::new(format!("{name}: event-time marks"), input.inner.scope());
    let mut rows_in = builder.new_input(input.inner, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut rows_out, rows) = builder.new_output::<Vec<(Row, Tick, Diff)>>();
    let (mut marks_out, marks) = builder.new_output::<Vec<(i64, Tick, Diff)>>();
    builder.build(move |_| {
        let mut by_time: BTreeMap<Tick, i64> = BTreeMap::new();
        let mut batch = Vec::new();
        move |_frontiers| {
            let mut rows_out = rows_out.activate();
            let mut marks_out = marks_out.activate();
            rows_in.for_each(|cap, data| {
                for (row, t, diff) in data.iter() {
                    if *diff > 0 {
                        if let Some(ts) = event_time(row, order_by) {
                            let m = by_time.entry(*t).or_insert(ts);
                            *m = (*m).max(ts);
                        }
                    }
                }
                batch.extend(std::mem::take(&mut by_time).into_iter().map(|(t, ts)| (ts, t, 1)));
                if !batch.is_empty() {
                    marks_out.give(&cap, &mut batch);
                    batch.clear();
                }
                rows_out.give(&cap, data);
            });
        }
    });
    let marks = marks.broadcast();
    let key_cols = layout.partition_by.clone();
    let watermark = layout.watermark;
    let mut state = State {
        matcher,
        layout,
        clock: Clock::new(watermark),
        index: FastMap::default(),
        slots: Vec::new(),
        free: Vec::new(),
        wakes: BinaryHeap::new(),
        filings: 0,
        key_buf: Row::new(),
        attempts: 0,
        outbox: Vec::new(),
        watermark: i64::MIN,
    };
    let capture = snapshots.as_ref().map(|s| s.capture.clone());
    if let Some(s) = &snapshots {
        if let Err(e) = state.restore(&s.restore, index, peers) {
            // The snapshot was checked against the plan's fingerprint: an
            // entry that does not decode is damage, reported where the
            // restore is.
            state.outbox.push((
                0,
                Emitted {
                    rows: Vec::new(),
                    errors: vec![(format!("pattern state not restored: {e}"), Row::new())],
                },
            ));
        }
    }
    /// A match (or time-out) row, or a row for the dead letters.
    type Out = (Result<Row, (String, Row)>, Tick, Diff);
    type Builder = CapacityContainerBuilder<Vec<Out>>;
    let both = rows.binary_frontier::<_, Builder, _, _, _, _>(
        marks,
        Exchange::new(move |(row, _, _): &(Row, Tick, Diff)| route(key_cols.iter().map(|&i| &row[i]))),
        Pipeline,
        name,
        move |capability, _info| {
            let mut cap: Option<Capability<Tick>> = Some(capability);
            let mut rows: BTreeMap<Tick, Vec<(Row, Diff)>> = BTreeMap::new();
            let mut marks: BTreeMap<Tick, i64> = BTreeMap::new();
            move |(input, frontier), (mark_input, mark_frontier), output| {
                input.for_each(|_cap, data| {
                    for (row, t, diff) in data.drain(..) {
                        rows.entry(t).or_default().push((row, diff));
                    }
                });
                mark_input.for_each(|_cap, data| {
                    for (ts, t, _) in data.drain(..) {
                        let m = marks.entry(t).or_insert(ts);
                        *m = (*m).max(ts);
                    }
                });
                let Some(held) = cap.as_ref() else { return };
                // The earliest time either input may still bring.
                let now = [frontier.frontier().first(), mark_frontier.frontier().first()]
                    .into_iter()
                    .flatten()
                    .min()
                    .copied();
                let complete = |t: &Tick| now.is_none_or(|n| *t < n);
                loop {
                    let next = [rows.keys().next(), marks.keys().next()]
                        .into_iter()
                        .flatten()
                        .min()
                        .copied();
                    let Some(t) = next.filter(complete) else { break };
                    if let Some(c) = &capture {
                        capture_before(c, &mut state, t);
                    }
                    let data = rows.remove(&t).unwrap_or_default();
                    let mark = marks.remove(&t);
                    state.tick(t, data, mark);
                }
                match now {
                    // Every tick before the frontier is complete.
                    Some(n) => {
                        if let Some(c) = &capture {
                            capture_before(c, &mut state, n);
                        }
                        state.idle_until(n.saturating_sub(1));
                    }
                    None => state.finish(*held.time()),
                }
                for (t, e) in state.outbox.drain(..) {
                    // Never before the capability held: that time is past.
                    let t = t.max(*held.time());
                    let at = held.delayed(&t);
                    let mut session = output.session(&at);
                    stats.emitted.set(stats.emitted.get() + e.rows.len() as u64);
                    for row in e.rows {
                        session.give((Ok(row), t, 1));
                    }
                    for err in e.errors {
                        session.give((Err(err), t, 1));
                    }
                }
                stats.partitions.set(state.index.len());
                stats.partial_matches.set(state.attempts);
                match now {
                    Some(n) => {
                        if let Some(c) = cap.as_mut() {
                            c.downgrade(&n);
                        }
                    }
                    None => cap = None,
                }
            }
        },
    );
    let (oks, errs) = both.ok_err::<Vec<_>, _, Vec<_>, _, _>(|(r, t, d)| match r {
        Ok(row) => Ok((row, t, d)),
        Err(e) => Err((e, t, d)),
    });
    (oks.as_collection(), errs.as_collection())
}
