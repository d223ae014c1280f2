//! A view's read-optimised copy (DESIGN.md §2, "The read path does not
//! enter the worker loop"): per worker shard, an immutable version of the
//! shard's part of the view, published as its arrangement advances and read
//! on any thread without the workers.
//!
//! # Versions
//! A published [`Shard`] holds the rows of every update before its `upper`
//! in a persistent ordered map, and the updates of the last few seconds. A
//! read as of `t` in `since..upper` takes the map and takes back the
//! updates after `t`, so it is exact. Publishing costs the changes (the new
//! map shares every untouched node with the one before), not the view's
//! size. A reader keeps the version it loaded alive for as long as it reads
//! it, so nothing is compacted under it.
//!
//! # Contract
//! One [`ShardWriter`] per shard, on the worker that owns that part of the
//! arrangement; it publishes a time only once every update before it has
//! been applied. Readers take one version of every shard with
//! [`ReadCopy::load`].

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use imbl::{OrdMap, Vector};

use crate::repr::{Diff, Row, Tick};

/// An arrangement entry: the view's key columns (or the whole row) and the
/// row (or an empty row, when the key is the row).
pub type Entry = (Arc<Row>, Arc<Row>);

/// An entry in a shard's map, after its key's hash: the map is ordered by
/// hash first, so a lookup's search compares numbers held in the map's
/// nodes, not rows behind two pointers each (a cache miss apiece on a large
/// view). Readers sort what they return, so the map's order is theirs to
/// choose.
type Slot = (u64, Entry);

/// The hash an arrangement exchanges a key by (differential's `hashed`),
/// which also says which worker, so which shard, holds it.
fn key_hash(key: &Row) -> u64 {
    differential_dataflow::Hashable::hashed(key)
}

/// Updates kept per shard for reads at earlier times, at most: past it the
/// oldest go and `since` moves up (a replay racing through history would
/// otherwise keep seconds of it). A read before `since` goes through the
/// workers instead.
pub const RECENT_UPDATES_KEPT: usize = 1 << 15;

/// The earliest time a view complete through `complete` is still read at
/// exactly, keeping `window` ticks of history, when its dataflow was
/// installed at `installed`: the history it replays comes at coarser times
/// than the other dataflows saw it at, so nothing before the install is
/// read once the view is past it (before, only `complete` is). The read
/// copy and the workers' compaction bound both keep to it.
pub fn earliest_exact(complete: Tick, window: Tick, installed: Tick) -> Tick {
    complete.saturating_sub(window).max(installed.min(complete))
}

/// One version of one shard.
#[derive(Clone, Default)]
pub struct Shard {
    /// The first time not complete (0: none is).
    pub upper: Tick,
    /// The earliest time this version can be read at.
    pub since: Tick,
    /// Rows of this shard's part of the view (the sum of their diffs).
    pub rows: i64,
    entries: OrdMap<Slot, Diff>,
    /// Updates at times after `since`, in time order once published.
    recent: Vector<(Tick, Entry, Diff)>,
}

impl Shard {
    /// Whether a read as of `t` can be answered from this version.
    pub fn readable_at(&self, t: Tick) -> bool {
        self.since <= t && t < self.upper
    }

    /// Appends to `out` the rows under `key` as of `t`, with their
    /// multiplicities (a row is the entry's row, or its key when that is
    /// the row). Multiplicities may be negative only if the engine is wrong;
    /// the caller decides what to do with such rows.
    ///
    /// # Contract
    /// `self.readable_at(t)`.
    pub fn lookup(&self, t: Tick, key: &Row, out: &mut Vec<(Row, Diff)>) {
        let h = key_hash(key);
        let from: Slot = (h, (Arc::new(key.clone()), Arc::new(Vec::new())));
        let mut found: Vec<(Slot, Diff)> = self
            .entries
            .range((Bound::Included(from), Bound::Unbounded))
            .take_while(|((hash, e), _)| *hash == h && *e.0 == *key)
            .map(|(s, d)| (s.clone(), *d))
            .collect();
        if t + 1 < self.upper {
            let mut back: HashMap<&Entry, Diff> = HashMap::new();
            for (_, e, d) in self.after(t) {
                if *e.0 == *key {
                    *back.entry(e).or_default() += d;
                }
            }
            take_back(&mut found, back);
        }
        push_rows(found, out);
    }

    /// Appends to `out` every row of the shard as of `t` (see
    /// [`Shard::lookup`]).
    ///
    /// # Contract
    /// `self.readable_at(t)`.
    pub fn scan(&self, t: Tick, out: &mut Vec<(Row, Diff)>) {
        let mut found: Vec<(Slot, Diff)> = self.entries.iter().map(|(s, d)| (s.clone(), *d)).collect();
        if t + 1 < self.upper {
            let mut back: HashMap<&Entry, Diff> = HashMap::new();
            for (_, e, d) in self.after(t) {
                *back.entry(e).or_default() += d;
            }
            take_back(&mut found, back);
        }
        push_rows(found, out);
    }
}

impl Shard {
    /// The kept updates after `t`, latest first (`recent` is in time
    /// order: see [`ShardWriter::advance`]).
    fn after(&self, t: Tick) -> impl Iterator<Item = &(Tick, Entry, Diff)> {
        self.recent.iter().rev().take_while(move |(at, _, _)| *at > t)
    }

    /// Appends to `out` the updates at times in `(after, through]`, as
    /// (time, row, diff), in no particular order.
    ///
    /// # Contract
    /// `after >= self.since` (earlier updates are no longer kept).
    pub fn changes(&self, after: Tick, through: Tick, out: &mut Vec<(Tick, Row, Diff)>) {
        for (at, (key, row), d) in self.after(after) {
            if *at <= through {
                let row = if row.is_empty() { key } else { row };
                out.push((*at, Row::clone(row), *d));
            }
        }
    }
}

/// Takes the updates in `back` out of `found` (sorted, as the map is):
/// rows they added go, rows they removed come back.
fn take_back(found: &mut Vec<(Slot, Diff)>, back: HashMap<&Entry, Diff>) {
    if back.is_empty() {
        return;
    }
    let sorted = found.len();
    for (e, b) in back {
        let slot: Slot = (key_hash(&e.0), e.clone());
        match found[..sorted].binary_search_by(|(f, _)| f.cmp(&slot)) {
            Ok(i) => found[i].1 -= b,
            Err(_) => found.push((slot, -b)),
        }
    }
    found.retain(|(_, d)| *d != 0);
}

fn push_rows(found: Vec<(Slot, Diff)>, out: &mut Vec<(Row, Diff)>) {
    for ((_, (key, row)), d) in found {
        let row = if row.is_empty() { key } else { row };
        out.push((Arc::unwrap_or_clone(row), d));
    }
}

/// A view's copy: every shard's latest version.
pub struct ReadCopy {
    shards: Box<[ArcSwap<Shard>]>,
    /// How far back (ticks) reads at an earlier time stay possible.
    window: Tick,
    /// When the view's dataflow was installed (see [`earliest_exact`]).
    installed: Tick,
    /// Called after every publish (wakes readers waiting for a time).
    published: Box<dyn Fn() + Send + Sync>,
    /// Set once the view's dataflow is gone (replaced or dropped): nothing
    /// is published any more.
    retired: AtomicBool,
}

impl ReadCopy {
    /// A copy of `shards` shards keeping `window` ticks of history, for a
    /// view whose dataflow was installed at `installed` (0: its times are
    /// exact from the start).
    pub fn new(shards: usize, window: Tick, installed: Tick, published: Box<dyn Fn() + Send + Sync>) -> Arc<ReadCopy> {
        Arc::new(ReadCopy {
            shards: (0..shards).map(|_| ArcSwap::from_pointee(Shard::default())).collect(),
            window,
            installed,
            published,
            retired: AtomicBool::new(false),
        })
    }

    /// Marks the copy's dataflow gone, and wakes its readers so that they
    /// look where the view is now.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        (self.published)();
    }

    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// The latest version of every shard.
    pub fn load(&self) -> Versions {
        Versions(self.shards.iter().map(|s| s.load_full()).collect())
    }

    /// The writer of shard `index` (one per shard).
    pub fn writer(self: &Arc<Self>, index: usize) -> ShardWriter {
        ShardWriter {
            copy: Arc::clone(self),
            index,
            state: Shard::default(),
            unpublished: Vec::new(),
        }
    }
}

/// One version of every shard of a view, loaded together.
pub struct Versions(pub Vec<Arc<Shard>>);

impl Versions {
    /// The latest time complete in every shard; `None` while some shard has
    /// none.
    pub fn complete(&self) -> Option<Tick> {
        self.0.iter().map(|s| s.upper).min()?.checked_sub(1)
    }

    /// The earliest time every shard can still be read at.
    pub fn since(&self) -> Tick {
        self.0.iter().map(|s| s.since).max().unwrap_or(0)
    }

    pub fn readable_at(&self, t: Tick) -> bool {
        self.0.iter().all(|s| s.readable_at(t))
    }

    /// Appends to `out` the rows under `key` as of `t` (see
    /// [`Shard::lookup`]): from the shard the key's hash routes it to, as
    /// the arrangement's exchange does, and from the others only when that
    /// one has none, so that a different routing costs time, never rows.
    ///
    /// # Contract
    /// `self.readable_at(t)`.
    pub fn lookup(&self, t: Tick, key: &Row, out: &mut Vec<(Row, Diff)>) {
        let n = self.0.len();
        if n == 0 {
            return;
        }
        let home = (key_hash(key) % n as u64) as usize;
        let before = out.len();
        self.0[home].lookup(t, key, out);
        if out.len() == before {
            for (i, shard) in self.0.iter().enumerate() {
                if i != home {
                    shard.lookup(t, key, out);
                }
            }
        }
    }

    /// The view's rows, over every shard.
    pub fn rows(&self) -> i64 {
        self.0.iter().map(|s| s.rows).sum()
    }
}

/// Publishes one shard's versions (see the module's contract).
pub struct ShardWriter {
    copy: Arc<ReadCopy>,
    index: usize,
    state: Shard,
    /// Updates applied since the last publish, moved to `state.recent` in
    /// time order by the next [`ShardWriter::advance`].
    unpublished: Vec<(Tick, Entry, Diff)>,
}

impl ShardWriter {
    /// Applies one update of the arrangement (published by the next
    /// [`ShardWriter::advance`]).
    pub fn update(&mut self, at: Tick, key: Row, row: Row, diff: Diff) {
        if diff == 0 {
            return;
        }
        let h = key_hash(&key);
        let entry: Entry = (Arc::new(key), Arc::new(row));
        let slot: Slot = (h, entry.clone());
        let count = self.state.entries.get(&slot).copied().unwrap_or(0) + diff;
        if count == 0 {
            self.state.entries.remove(&slot);
        } else {
            self.state.entries.insert(slot, count);
        }
        self.state.rows += diff;
        self.unpublished.push((at, entry, diff));
    }

    /// Whether a view complete before `upper` is still replaying the
    /// history before its dataflow's install: nothing it holds then is
    /// read from a copy but its latest time, and [`ShardWriter::load`]
    /// builds the copy once the view is past it.
    pub fn replaying(&self, upper: Tick) -> bool {
        upper != Tick::MAX && upper.saturating_sub(1) < self.copy.installed
    }

    /// Publishes `rows` (with their multiplicities) as the shard's whole
    /// contents, complete before `upper` and readable from `since` on: the
    /// first version after a replay, built in one pass over the arrangement
    /// instead of update by update while replaying.
    ///
    /// # Contract
    /// Called once, before any [`ShardWriter::update`]; nothing changed
    /// the rows between `since` and `upper`.
    pub fn load(&mut self, upper: Tick, since: Tick, rows: impl IntoIterator<Item = (Row, Row, Diff)>) {
        let s = &mut self.state;
        for (key, row, diff) in rows {
            if diff != 0 {
                let h = key_hash(&key);
                s.rows += diff;
                s.entries.insert((h, (Arc::new(key), Arc::new(row))), diff);
            }
        }
        s.since = s.since.max(since);
        self.advance(upper);
    }

    /// Publishes every update applied so far as complete before `upper`,
    /// forgetting the updates reads no longer need.
    pub fn advance(&mut self, upper: Tick) {
        if upper <= self.state.upper {
            return;
        }
        let s = &mut self.state;
        // The updates since the last publish come batch by batch, sorted by
        // row within a batch; all are at or after the last upper. Sorted by
        // time, they keep `recent` in time order, so that a read walks back
        // only over the updates after its time. (Only `push_back` and
        // `pop_front` change `recent`: reordering it in place with imbl's
        // `split_off` and `append` crashed a test, and `slice` and `extend`
        // gave subscriptions wrong changes under load.)
        self.unpublished.sort_by_key(|u| u.0);
        for u in self.unpublished.drain(..) {
            s.recent.push_back(u);
        }
        s.upper = upper;
        // Final (`Tick::MAX`): nothing changes any more, every time since
        // stays readable.
        if upper != Tick::MAX {
            s.since = s.since.max(earliest_exact(
                upper.saturating_sub(1),
                self.copy.window,
                self.copy.installed,
            ));
        }
        while s.recent.len() > RECENT_UPDATES_KEPT {
            if let Some((at, _, _)) = s.recent.pop_front() {
                s.since = s.since.max(at);
            }
        }
        while s.recent.front().is_some_and(|(at, _, _)| *at <= s.since) {
            s.recent.pop_front();
        }
        self.copy.shards[self.index].store(Arc::new(s.clone()));
        (self.copy.published)();
    }

    /// The last upper published.
    pub fn upper(&self) -> Tick {
        self.state.upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::Datum;

    fn row(k: i64, v: i64) -> (Row, Row) {
        (vec![Datum::Int(k)], vec![Datum::Int(k), Datum::Int(v)])
    }

    /// The rows as of `t`, from a naive fold over every update.
    fn naive(updates: &[(Tick, i64, i64, Diff)], t: Tick, key: Option<i64>) -> Vec<(Row, Diff)> {
        let mut m: std::collections::BTreeMap<Row, Diff> = std::collections::BTreeMap::new();
        for &(at, k, v, d) in updates {
            if at <= t && key.is_none_or(|q| q == k) {
                *m.entry(row(k, v).1).or_default() += d;
            }
        }
        m.into_iter().filter(|(_, d)| *d != 0).collect()
    }

    #[test]
    fn reads_at_any_readable_time_equal_a_naive_fold() {
        let copy = ReadCopy::new(1, 50, 0, Box::new(|| {}));
        let mut w = copy.writer(0);
        let mut x: u64 = 11;
        let mut rand = |n: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let mut all: Vec<(Tick, i64, i64, Diff)> = Vec::new();
        let mut held: Vec<(i64, i64)> = Vec::new();
        let mut readers = Vec::new();
        let mut upper = 0;
        while upper < 300 {
            // A batch spans one to three times, its updates in no time
            // order (an arrangement's batch is sorted by row), with
            // retractions of held rows.
            let lower = upper;
            upper += 1 + rand(3);
            for _ in 0..rand(8) {
                let at = lower + rand(upper - lower);
                if !held.is_empty() && rand(3) == 0 {
                    let (k, v) = held.swap_remove(rand(held.len() as u64) as usize);
                    w.update(at, row(k, v).0, row(k, v).1, -1);
                    all.push((at, k, v, -1));
                } else {
                    let (k, v) = (rand(10) as i64, rand(4) as i64);
                    w.update(at, row(k, v).0, row(k, v).1, 1);
                    all.push((at, k, v, 1));
                    held.push((k, v));
                }
            }
            w.advance(upper);
            readers.push((upper, copy.load()));
            let v = copy.load();
            assert_eq!(v.complete(), Some(upper - 1));
            for t in v.since()..upper {
                let mut got = Vec::new();
                v.0[0].scan(t, &mut got);
                got.sort();
                assert_eq!(got, naive(&all, t, None), "scan as of {t} at upper {upper}");
                let k = rand(10) as i64;
                let mut got = Vec::new();
                v.0[0].lookup(t, &vec![Datum::Int(k)], &mut got);
                got.sort();
                assert_eq!(got, naive(&all, t, Some(k)), "key {k} as of {t}");
            }
            assert!(v.since() + 51 >= upper, "keeps only the window");
            // The changes after any kept time, as subscriptions read them.
            let after = v.since() + rand(upper - v.since());
            let mut got: Vec<(Tick, Row, Diff)> = Vec::new();
            v.0[0].changes(after, upper - 1, &mut got);
            got.sort();
            let mut want: Vec<(Tick, Row, Diff)> = all
                .iter()
                .filter(|(at, ..)| *at > after)
                .map(|(at, k, v, d)| (*at, row(*k, *v).1, *d))
                .collect();
            want.sort();
            assert_eq!(got, want, "changes after {after} at upper {upper}");
        }
        // A version loaded long ago still reads as it did.
        let (upper, old) = &readers[10];
        let mut got = Vec::new();
        old.0[0].scan(upper - 1, &mut got);
        got.sort();
        assert_eq!(got, naive(&all, upper - 1, None));
    }

    #[test]
    fn a_lookup_finds_a_key_in_any_shard() {
        // Keys placed without regard to their hash: the home shard misses
        // some, and the others are looked in.
        let copy = ReadCopy::new(3, 50, 0, Box::new(|| {}));
        let mut writers: Vec<ShardWriter> = (0..3).map(|i| copy.writer(i)).collect();
        for k in 0..30i64 {
            let (key, r) = row(k, k * 10);
            writers[(k % 3) as usize].update(0, key, r, 1);
        }
        for w in &mut writers {
            w.advance(1);
        }
        let v = copy.load();
        for k in 0..31i64 {
            let mut got = Vec::new();
            v.lookup(0, &vec![Datum::Int(k)], &mut got);
            let want: Vec<(Row, Diff)> = if k < 30 { vec![(row(k, k * 10).1, 1)] } else { vec![] };
            assert_eq!(got, want, "key {k}");
        }
    }

    #[test]
    fn no_time_before_the_install_is_readable_once_past_it() {
        // Installed at 1,000: history comes at coarse times (100, 200, ...),
        // which are not the times other dataflows saw it at.
        let copy = ReadCopy::new(1, 2_000, 1_000, Box::new(|| {}));
        let mut w = copy.writer(0);
        for at in [100, 200, 300] {
            let (k, r) = row(at as i64, 0);
            w.update(at, k, r, 1);
            w.advance(at + 1);
            // While replaying: only the latest complete time.
            let v = copy.load();
            assert_eq!(v.since(), at);
            assert!(v.readable_at(at) && !v.readable_at(at - 1));
        }
        w.advance(1_500);
        let v = copy.load();
        assert_eq!(v.since(), 1_000, "the window reaches back to 0, the install does not");
        assert!(v.readable_at(1_000) && v.readable_at(1_499) && !v.readable_at(999));
        w.advance(4_000);
        assert_eq!(copy.load().since(), 1_999, "past the install, the window");
    }

    #[test]
    fn a_copy_loaded_after_a_replay_reads_as_one_kept_update_by_update() {
        let copy = ReadCopy::new(1, 2_000, 1_000, Box::new(|| {}));
        let mut w = copy.writer(0);
        assert!(w.replaying(1_000) && !w.replaying(1_001) && !w.replaying(Tick::MAX));
        let rows = (0..100i64).map(|k| {
            let (key, r) = row(k % 10, k);
            (key, r, 1 + k % 3)
        });
        w.load(1_200, 1_199, rows.clone().chain([(row(99, 0).0, row(99, 0).1, 0)]));
        let v = copy.load();
        assert_eq!((v.since(), v.complete()), (1_199, Some(1_199)));
        let mut got = Vec::new();
        v.0[0].scan(1_199, &mut got);
        got.sort();
        let mut want: Vec<(Row, Diff)> = rows.map(|(_, r, d)| (r, d)).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(v.rows(), want.iter().map(|(_, d)| d).sum::<Diff>());
        // Updates go on from there.
        let (key, r) = row(3, 3);
        w.update(1_300, key.clone(), r.clone(), -1);
        w.advance(1_301);
        let mut got = Vec::new();
        copy.load().lookup(1_300, &key, &mut got);
        got.sort();
        let mut want: Vec<(Row, Diff)> = (13..100i64).step_by(10).map(|k| (row(3, k).1, 1 + k % 3)).collect();
        want.sort();
        assert_eq!(got, want);
    }
}
