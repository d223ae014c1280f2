//! State shared between the timely workers and the control plane (HTTP):
//! what the workers publish about their progress, and the reply channels of
//! outstanding peeks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_connectors::dead_letters::DeadLetter;
use weir_connectors::log::EventLog;
use weir_connectors::store::StateStore;
use weir_dataflows::plan::{TablePlan, ViewPlan};
use weir_operators::repr::{Diff, Row, Tick};

use crate::metrics::Metrics;

/// Identifies one installed dataflow (one version of one job).
pub type DataflowId = u64;

/// How many (offset, tick) marks each source partition keeps for
/// read-your-writes lookups; older tokens resolve to the oldest mark.
const POSITION_MARKS: usize = 4096;

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
    /// Read time → readers holding it.
    holds: BTreeMap<Tick, usize>,
}

impl ViewProgress {
    pub fn new(workers: usize) -> Self {
        ViewProgress {
            uppers: vec![None; workers],
            rows: vec![0; workers],
            holds: BTreeMap::new(),
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
    /// time, nor than the time the next reader would choose.
    pub fn compaction_bound(&self) -> Option<Tick> {
        let next_read = self.complete()?;
        Some(self.holds.keys().next().map_or(next_read, |&h| h.min(next_read)))
    }
}
/// (end offset read, tick it was read at), oldest first.
pub type PositionMarks = VecDeque<(u64, Tick)>;

/// A command every worker executes, in the same order on every worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Install {
        df: DataflowId,
        job: String,
        sources: Vec<TablePlan>,
        views: Vec<ViewPlan>,
        /// Views of other dataflows this one reads: (view, its dataflow).
        imports: Vec<(String, DataflowId)>,
    },
    Drop {
        df: DataflowId,
    },
    Peek(PeekCommand),
    Shutdown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeekCommand {
    pub id: u64,
    pub df: DataflowId,
    pub view: String,
    pub as_of: Tick,
    /// Only the rows under this key of the view's index.
    pub key: Option<Row>,
}

/// One worker's part of a peek's answer.
pub struct PeekReply {
    pub rows: Result<Vec<(Row, Diff)>, String>,
}

pub struct Shared {
    pub store: StateStore,
    pub log: EventLog,
    pub workers: usize,
    pub metrics: Metrics,
    /// Per (dataflow, view): each worker's trace upper and the held read times.
    pub frontiers: Mutex<HashMap<(DataflowId, String), ViewProgress>>,
    /// Per (dataflow, topic, partition): (end offset read, tick it was read at).
    pub positions: Mutex<HashMap<(DataflowId, String, u32), PositionMarks>>,
    /// Per (dataflow, worker): records in the log not yet read by its sources.
    pub lag: Mutex<HashMap<(DataflowId, usize), u64>>,
    pub peek_replies: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<PeekReply>>>,
    pub dead_letters: Mutex<std::sync::mpsc::Sender<DeadLetter>>,
    /// The timely worker threads, to wake them when there is work.
    pub worker_threads: Mutex<Vec<std::thread::Thread>>,
}

/// Locks a mutex, recovering from poisoning: the data behind these locks
/// stays consistent per operation, so a panicked holder leaves nothing half done.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> Tick {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Tick)
        .unwrap_or(0)
}

impl Shared {
    /// Wakes the workers from their idle park: new records in the log, or a
    /// command. Idle workers otherwise look only every few milliseconds.
    pub fn wake_workers(&self) {
        for t in lock(&self.worker_threads).iter() {
            t.unpark();
        }
    }

    pub fn record_position(&self, df: DataflowId, topic: &str, partition: u32, end: u64, tick: Tick) {
        let mut positions = lock(&self.positions);
        let marks = positions.entry((df, topic.to_string(), partition)).or_default();
        if marks.back().is_some_and(|(e, _)| *e == end) {
            return;
        }
        marks.push_back((end, tick));
        if marks.len() > POSITION_MARKS {
            marks.pop_front();
        }
    }

    /// The tick by which dataflow `df` had read `offset` of the partition:
    /// `Ok(None)` when it does not read that partition, `Err(())` when it has
    /// not read that far yet.
    pub fn tick_of(&self, df: DataflowId, topic: &str, partition: u32, offset: u64) -> Result<Option<Tick>, ()> {
        let positions = lock(&self.positions);
        let Some(marks) = positions.get(&(df, topic.to_string(), partition)) else {
            return Ok(None);
        };
        marks
            .iter()
            .find(|(end, _)| *end > offset)
            .map(|(_, t)| Some(*t))
            .ok_or(())
    }

    /// The view's rows, over all workers, as far as they have computed it.
    pub fn view_rows(&self, df: DataflowId, view: &str) -> Option<i64> {
        Some(lock(&self.frontiers).get(&(df, view.to_string()))?.rows.iter().sum())
    }

    /// The time through which a view is complete on every worker.
    pub fn complete_through(&self, df: DataflowId, view: &str) -> Option<Tick> {
        lock(&self.frontiers).get(&(df, view.to_string()))?.complete()
    }

    /// Chooses the time to read a view at: the latest complete one, if it is
    /// at least `required`. The time is held (its history kept) until the
    /// returned hold is dropped.
    pub fn hold_read(self: &Arc<Self>, df: DataflowId, view: &str, required: Tick) -> Option<ReadHold> {
        let key = (df, view.to_string());
        let mut frontiers = lock(&self.frontiers);
        let progress = frontiers.get_mut(&key)?;
        let at = progress.complete().filter(|c| *c >= required)?;
        *progress.holds.entry(at).or_default() += 1;
        Some(ReadHold {
            shared: Arc::clone(self),
            key,
            at,
        })
    }

    /// The latest tick at which a source of `df` read a record.
    fn last_read_tick(&self, df: DataflowId) -> Tick {
        let positions = lock(&self.positions);
        positions
            .iter()
            .filter(|((d, _, _), _)| *d == df)
            .filter_map(|(_, marks)| marks.back().map(|(_, t)| *t))
            .max()
            .unwrap_or(0)
    }

    /// True when every worker's sources of `df` have read the whole log and
    /// every view of `df` reflects all they read, and is complete through
    /// `not_before` at least. This is what "caught up" means for readiness,
    /// job status and the swap of a replaced job alike.
    pub fn caught_up(&self, df: DataflowId, not_before: Tick) -> bool {
        let read_all = {
            let lag = lock(&self.lag);
            (0..self.workers).all(|w| lag.get(&(df, w)) == Some(&0))
        };
        if !read_all {
            return false;
        }
        let through = not_before.max(self.last_read_tick(df));
        let frontiers = lock(&self.frontiers);
        frontiers
            .iter()
            .filter(|((d, _), _)| *d == df)
            .all(|(_, progress)| progress.complete().is_some_and(|t| t >= through))
    }
}

/// A reader's hold on one view's history at one time (see [`Shared::hold_read`]).
pub struct ReadHold {
    shared: Arc<Shared>,
    key: (DataflowId, String),
    pub at: Tick,
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        let mut frontiers = lock(&self.shared.frontiers);
        if let Some(holds) = frontiers.get_mut(&self.key).map(|p| &mut p.holds) {
            if let Some(n) = holds.get_mut(&self.at) {
                *n -= 1;
                if *n == 0 {
                    holds.remove(&self.at);
                }
            }
        }
    }
}
