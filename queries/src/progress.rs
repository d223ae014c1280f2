//! What is known about one view's trace on every worker: how far each has
//! it, its rows, and the read times held against compaction. Runtime-free.

use std::collections::BTreeMap;

use weir_operators::read_copy::earliest_exact;
use weir_operators::repr::Tick;

/// How far behind its latest complete time a view can still be read
/// (`as_of=`), e.g. at the time another view was just read at. Ticks are
/// the log's append times, so this is bounded by the ingest rate, also
/// while a replay races through history.
pub const READABLE_HISTORY_MS: Tick = 2_000;

/// Each worker's trace upper of one view (`None` until reported).
pub type WorkerUppers = Vec<Option<Tick>>;

/// What is known about one view's trace: how far each worker has it, and
/// the times readers have chosen and not yet finished reading at.
///
/// # Contract
/// A worker compacts its trace to at most [`ViewProgress::compaction_bound`],
/// computed under the same lock as readers choose and hold their time, so a
/// chosen time is never compacted away: reads are exact without keeping
/// any extra history (DESIGN.md §2).
#[derive(Clone, Debug)]
pub struct ViewProgress {
    pub uppers: WorkerUppers,
    /// Each worker's row count of its part of the view.
    pub rows: Vec<i64>,
    /// Each worker's partial matches in progress, when the view has pattern
    /// rules (`None` otherwise).
    pub partial_matches: Option<Vec<i64>>,
    /// Read time → readers holding it.
    pub(crate) holds: BTreeMap<Tick, usize>,
    /// The furthest any worker has been allowed to compact: reads before it
    /// are no longer exact.
    pub since: Tick,
}

impl ViewProgress {
    pub fn new(workers: usize) -> Self {
        ViewProgress {
            uppers: vec![None; workers],
            rows: vec![0; workers],
            partial_matches: None,
            holds: BTreeMap::new(),
            since: 0,
        }
    }

    /// The time through which every worker's trace is complete: one less
    /// than the least upper; `None` until every worker has reported.
    pub fn complete(&self) -> Option<Tick> {
        let mut min = Tick::MAX;
        for u in &self.uppers {
            min = min.min((*u)?);
        }
        min.checked_sub(1)
    }

    /// How far the trace may be compacted: no further than any held read
    /// time, and [`READABLE_HISTORY_MS`] behind the time the next reader
    /// would choose, but no history before the dataflow's install at
    /// `installed` (a replay keeps nothing it passes through). Recorded as
    /// the view's `since`.
    pub fn compaction_bound(&mut self, installed: Tick) -> Option<Tick> {
        let complete = self.complete()?;
        let next_read = earliest_exact(complete, READABLE_HISTORY_MS, installed);
        let bound = self.holds.keys().next().map_or(next_read, |&h| h.min(next_read));
        self.since = self.since.max(bound);
        Some(bound)
    }
}
