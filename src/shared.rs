//! State shared between the timely workers and the control plane (HTTP):
//! what the workers publish about their progress, and the reply channels of
//! outstanding peeks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_connectors::dead_letters::DeadLetter;
use weir_connectors::kafka::{mirrored_at, Ingest};
use weir_connectors::log::EventLog;
use weir_connectors::sink::Sink;
use weir_connectors::store::StateStore;
use weir_dataflows::plan::{SinkPlan, TablePlan, ViewPlan};
use weir_operators::repr::{Diff, Row, Tick};

use crate::metrics::Metrics;

/// Identifies one installed dataflow (one version of one job).
pub type DataflowId = u64;

/// How far behind its latest complete time a view can still be read
/// (`as_of=`), e.g. at the time another view was just read at. Ticks are
/// the log's append times, so this is bounded by the ingest rate, also
/// while a replay races through history.
pub const READABLE_HISTORY_MS: Tick = 2_000;
/// History is replayed at times rounded up to this many milliseconds.
const HISTORY_GRANULE_MS: Tick = 100;

/// How a dataflow installed at `since` times the records it reads.
///
/// A record appended at or after `since` is fed at its own tick. History
/// (appended before `since`) is fed at coarser times, never later than
/// `since`: a replay passes through few distinct times, and from `since` on
/// every dataflow agrees on every record's time. History is never fed
/// across a pin: a time a sink wrote through before a restart stays a time
/// of the replayed views, so the sink resumes exactly after it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Feeding {
    pub since: Tick,
    /// Sorted.
    pub pins: Vec<Tick>,
}

impl Feeding {
    pub fn time(&self, tick: Tick) -> Tick {
        if tick >= self.since {
            return tick;
        }
        let coarse = (tick / HISTORY_GRANULE_MS + 1)
            .saturating_mul(HISTORY_GRANULE_MS)
            .min(self.since);
        // The first pin at or after the tick, if it comes before `coarse`.
        let i = self.pins.partition_point(|&p| p < tick);
        match self.pins.get(i) {
            Some(&p) if p < coarse => p,
            _ => coarse,
        }
    }
}

/// The key of a sink's writer: a sink defined again with another topic
/// is another writer.
pub fn sink_key(s: &SinkPlan) -> String {
    format!("{}/{}", s.name, s.topic)
}

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
    holds: BTreeMap<Tick, usize>,
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
        let next_read = complete
            .saturating_sub(READABLE_HISTORY_MS)
            .max(installed.min(complete));
        let bound = self.holds.keys().next().map_or(next_read, |&h| h.min(next_read));
        self.since = self.since.max(bound);
        Some(bound)
    }
}

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
        /// How records are timed (see [`Feeding`]).
        feeding: Feeding,
        /// The job's changelog sinks.
        sinks: Vec<SinkPlan>,
        /// Records appended before this time are skipped (a job that starts
        /// from the latest events); 0 reads the whole history.
        skip_before: Tick,
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
    /// Records a source reads from one partition at a time: bounds the batch
    /// a catching-up source introduces at once, and so peak memory.
    pub read_chunk: usize,
    pub metrics: Metrics,
    /// Per (dataflow, view): each worker's trace upper and the held read times.
    pub frontiers: Mutex<HashMap<(DataflowId, String), ViewProgress>>,
    /// Per (dataflow, worker): the latest time its sources fed a record at.
    pub read_through: Mutex<HashMap<(DataflowId, usize), Tick>>,
    /// Per dataflow: how it times records (see [`Feeding`]).
    pub since: Mutex<HashMap<DataflowId, Feeding>>,
    /// Per (dataflow, worker): records in the log not yet read by its sources.
    pub lag: Mutex<HashMap<(DataflowId, usize), u64>>,
    pub peek_replies: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<PeekReply>>>,
    pub dead_letters: Mutex<std::sync::mpsc::Sender<DeadLetter>>,
    /// The timely worker threads, to wake them when there is work.
    pub worker_threads: Mutex<Vec<std::thread::Thread>>,
    /// The running Kafka sources, by the log topic they copy into.
    pub ingests: Mutex<BTreeMap<String, Ingest>>,
    /// The running sink writers, by sink name and topic.
    pub sinks: Mutex<BTreeMap<String, Sink>>,
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

    /// The tick the record at `offset` of a partition was appended at;
    /// `None` while the log has no such record.
    pub fn appended_at(&self, topic: &str, partition: u32, offset: u64) -> Option<Tick> {
        Some(self.log.read(topic, partition, offset, 1).ok()?.first()?.tick)
    }

    /// The first offset of a partition whose record was appended at or
    /// after `tick` (its end when none is): records come in tick order, so
    /// a binary search reads a handful of records instead of the whole
    /// history.
    pub fn first_offset_from(&self, topic: &str, partition: u32, tick: Tick) -> u64 {
        if tick == 0 {
            return 0;
        }
        let (mut lo, mut hi) = (0, self.log.end_offset(topic, partition));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.appended_at(topic, partition, mid) {
                Some(t) if t < tick => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The tick at which the write a token names is in the log: a Kafka
    /// position when a Kafka source reads the token's topic (then every
    /// source reading it must hold it), else a position of the embedded log.
    pub fn written_at(&self, topic: &str, partition: u32, offset: u64) -> Option<Tick> {
        let mirrors: Vec<String> = lock(&self.ingests)
            .values()
            .filter(|i| i.config.topic == topic)
            .map(|i| i.config.mirror.clone())
            .collect();
        if mirrors.is_empty() {
            return self.appended_at(topic, partition, offset);
        }
        mirrors.iter().try_fold(0, |t: Tick, m| {
            Some(t.max(mirrored_at(&self.log, m, partition, offset)?))
        })
    }

    /// The time at which dataflow `df` processes a record appended at `tick`:
    /// it reflects the record once its views are complete through it.
    pub fn fed_in(&self, df: DataflowId, tick: Tick) -> Tick {
        lock(&self.since).get(&df).map_or(tick, |f| f.time(tick))
    }

    /// The view's rows, over all workers, as far as they have computed it.
    pub fn view_rows(&self, df: DataflowId, view: &str) -> Option<i64> {
        Some(lock(&self.frontiers).get(&(df, view.to_string()))?.rows.iter().sum())
    }

    /// The view's partial matches in progress, over all workers, when it
    /// has pattern rules.
    pub fn view_partial_matches(&self, df: DataflowId, view: &str) -> Option<i64> {
        let fr = lock(&self.frontiers);
        Some(fr.get(&(df, view.to_string()))?.partial_matches.as_ref()?.iter().sum())
    }

    /// The time through which a view is complete on every worker.
    pub fn complete_through(&self, df: DataflowId, view: &str) -> Option<Tick> {
        lock(&self.frontiers).get(&(df, view.to_string()))?.complete()
    }

    /// Chooses the time to read a view at: `exact` if given, else the latest
    /// complete one; in both cases at least `required`. `Ok(None)` while the
    /// view is not complete that far yet; `Err(since)` when `exact` is before
    /// the history the view still keeps. The time is held (its history kept)
    /// until the returned hold is dropped.
    pub fn hold_read(
        self: &Arc<Self>,
        df: DataflowId,
        view: &str,
        required: Tick,
        exact: Option<Tick>,
    ) -> Result<Option<ReadHold>, Tick> {
        let key = (df, view.to_string());
        let mut frontiers = lock(&self.frontiers);
        let Some(progress) = frontiers.get_mut(&key) else {
            return Ok(None);
        };
        if let Some(t) = exact {
            if t < progress.since {
                return Err(progress.since);
            }
        }
        let Some(complete) = progress.complete() else {
            return Ok(None);
        };
        let at = exact.unwrap_or(complete);
        if at > complete || at < required {
            return Ok(None);
        }
        *progress.holds.entry(at).or_default() += 1;
        Ok(Some(ReadHold {
            shared: Arc::clone(self),
            key,
            at,
        }))
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
        let read = lock(&self.read_through)
            .iter()
            .filter(|((d, _), _)| *d == df)
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0);
        let through = not_before.max(read);
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
