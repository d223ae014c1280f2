//! What the timely workers and the control plane (HTTP) share, one handle
//! per concern: the store, the read side's [`Frontiers`] and pending peeks,
//! each dataflow's source progress, the dead-letter queue, the workers'
//! wake-up, and the running connectors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use weir_connectors::dead_letters::DeadLetter;
use weir_connectors::kafka::Ingest;
use weir_connectors::log::EventLog;
use weir_connectors::schedule::Schedule;
use weir_connectors::sink::Sink;
use weir_connectors::source::Feeding;
use weir_connectors::store::StateStore;
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::plan::SinkPlan;
use weir_operators::repr::Tick;
use weir_queries::{Frontiers, PendingPeeks, ReadCopies, READABLE_HISTORY_MS};

use crate::metrics::Metrics;
use crate::snapshots::SnapshotHub;

/// Locks a mutex, recovering from poisoning: the data behind these locks
/// stays consistent per operation, so a panicked holder leaves nothing half done.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> Tick {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Tick)
        .unwrap_or(0)
}

/// The key of a sink's writer: a sink defined again with another topic
/// is another writer.
pub fn sink_key(s: &SinkPlan) -> String {
    format!("{}/{}", s.name, s.destination())
}

/// Records a source reads from one partition at a time by default. With
/// two reads in flight per dataflow this bounds the records queued in a
/// replay: larger chunks gain no speed, only memory (docs/performance.md).
pub const DEFAULT_READ_CHUNK: usize = 2_000;

pub struct Shared {
    pub store: StateStore,
    pub log: EventLog,
    pub workers: usize,
    /// Records a source reads from one partition at a time: bounds the batch
    /// a catching-up source introduces at once, and so peak memory
    /// ([`DEFAULT_READ_CHUNK`] unless told otherwise).
    pub read_chunk: usize,
    pub metrics: Metrics,
    /// Every view's progress on every worker, and the reads held against it.
    pub frontiers: Arc<Frontiers>,
    /// The reply channels of outstanding peeks.
    pub peeks: PendingPeeks,
    /// Every view's read-optimised copy, which reads answer from.
    pub copies: ReadCopies,
    pub sources: SourceProgress,
    pub dead_letters: DeadLetterQueue,
    pub wakers: Wakers,
    pub connectors: Connectors,
    pub snapshots: SnapshotHub,
}

impl Shared {
    /// The shared state of an engine with `workers` workers over `store`;
    /// dead letters go to `dead_letters`, whose receiver writes them.
    pub fn new(
        store: StateStore,
        workers: usize,
        read_chunk: usize,
        dead_letters: std::sync::mpsc::Sender<DeadLetter>,
    ) -> Result<Shared, prometheus::Error> {
        Ok(Shared {
            snapshots: SnapshotHub::new(store.snapshots()),
            log: store.log(),
            store,
            workers,
            read_chunk: read_chunk.max(1),
            metrics: Metrics::new()?,
            frontiers: Frontiers::new(workers),
            peeks: PendingPeeks::default(),
            copies: ReadCopies::new(workers, READABLE_HISTORY_MS),
            sources: SourceProgress::new(workers),
            dead_letters: DeadLetterQueue::new(dead_letters),
            wakers: Wakers::default(),
            connectors: Connectors::default(),
        })
    }

    /// True when every worker's sources of `df` have read the whole log and
    /// every view of `df` reflects all they read, and is complete through
    /// `not_before` at least. This is what "caught up" means for readiness,
    /// job status and the swap of a replaced job alike.
    pub fn caught_up(&self, df: DataflowId, not_before: Tick) -> bool {
        self.sources.read_all(df)
            && self
                .frontiers
                .all_complete(df, not_before.max(self.sources.read_through(df)))
    }
}

/// Per dataflow: how it times records, and per worker how far its sources
/// have read.
pub struct SourceProgress {
    workers: usize,
    /// Per dataflow: how it times records (see [`Feeding`]).
    feeding: Mutex<HashMap<DataflowId, Feeding>>,
    /// Per (dataflow, worker): the latest time its sources fed a record at.
    read_through: Mutex<HashMap<(DataflowId, usize), Tick>>,
    /// Per (dataflow, worker): records in the log not yet read by its sources.
    lag: Mutex<HashMap<(DataflowId, usize), u64>>,
}

impl SourceProgress {
    pub fn new(workers: usize) -> SourceProgress {
        SourceProgress {
            workers,
            feeding: Mutex::default(),
            read_through: Mutex::default(),
            lag: Mutex::default(),
        }
    }

    pub fn set_feeding(&self, df: DataflowId, feeding: Feeding) {
        lock(&self.feeding).insert(df, feeding);
    }

    /// The time at which dataflow `df` processes a record appended at `tick`:
    /// it reflects the record once its views are complete through it.
    pub fn fed_in(&self, df: DataflowId, tick: Tick) -> Tick {
        lock(&self.feeding).get(&df).map_or(tick, |f| f.time(tick))
    }

    /// A worker's sources of `df` fed records up to time `t`.
    pub fn fed_through(&self, df: DataflowId, worker: usize, t: Tick) {
        let mut through = lock(&self.read_through);
        let e = through.entry((df, worker)).or_default();
        *e = (*e).max(t);
    }

    /// The latest time any worker's sources of `df` fed a record at.
    pub fn read_through(&self, df: DataflowId) -> Tick {
        lock(&self.read_through)
            .iter()
            .filter(|((d, _), _)| *d == df)
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0)
    }

    pub fn set_lag(&self, df: DataflowId, worker: usize, lag: u64) {
        lock(&self.lag).insert((df, worker), lag);
    }

    /// Records of the log not yet read by `df`'s sources, over all workers;
    /// `None` until every worker has reported.
    pub fn lag(&self, df: DataflowId) -> Option<u64> {
        let lag = lock(&self.lag);
        (0..self.workers).map(|w| lag.get(&(df, w)).copied()).sum()
    }

    /// Every worker's sources of `df` have read the whole log.
    pub fn read_all(&self, df: DataflowId) -> bool {
        self.lag(df) == Some(0)
    }

    pub fn forget(&self, df: DataflowId) {
        lock(&self.feeding).remove(&df);
        lock(&self.read_through).retain(|(d, _), _| *d != df);
        lock(&self.lag).retain(|(d, _), _| *d != df);
    }
}

/// The queue of dead letters, written durably off the workers' threads.
pub struct DeadLetterQueue(Mutex<std::sync::mpsc::Sender<DeadLetter>>);

impl DeadLetterQueue {
    pub fn new(tx: std::sync::mpsc::Sender<DeadLetter>) -> DeadLetterQueue {
        DeadLetterQueue(Mutex::new(tx))
    }

    pub fn send(&self, letter: DeadLetter) {
        // The writer stops only after every holder of the queue is gone.
        let _ = lock(&self.0).send(letter);
    }
}

/// The timely worker threads, to wake them when there is work.
#[derive(Default)]
pub struct Wakers(Mutex<Vec<std::thread::Thread>>);

impl Wakers {
    /// Called by each worker on its own thread.
    pub fn register_current(&self) {
        lock(&self.0).push(std::thread::current());
    }

    /// Wakes the workers from their idle park: new records in the log, or a
    /// command. Idle workers otherwise look only every few milliseconds.
    pub fn wake(&self) {
        for t in lock(&self.0).iter() {
            t.unpark();
        }
    }
}

/// The running Kafka sources, sink writers and schedules.
#[derive(Default)]
pub struct Connectors {
    /// By the log topic they copy into.
    ingests: Mutex<BTreeMap<String, Ingest>>,
    /// By sink name and topic ([`sink_key`]).
    sinks: Mutex<BTreeMap<String, Sink>>,
    /// By the log topic they append ticks to.
    schedules: Mutex<BTreeMap<String, Schedule>>,
}

impl Connectors {
    pub fn ingests(&self) -> MutexGuard<'_, BTreeMap<String, Ingest>> {
        lock(&self.ingests)
    }

    pub fn sinks(&self) -> MutexGuard<'_, BTreeMap<String, Sink>> {
        lock(&self.sinks)
    }

    pub fn schedules(&self) -> MutexGuard<'_, BTreeMap<String, Schedule>> {
        lock(&self.schedules)
    }

    /// The log topics into which Kafka sources copy `topic`.
    pub fn mirrors_of(&self, topic: &str) -> Vec<String> {
        self.ingests()
            .values()
            .filter(|i| i.config.topic == topic)
            .map(|i| i.config.mirror.clone())
            .collect()
    }

    /// Stops every source and writer (each finishes its last write).
    pub fn stop_all(&self) {
        drop(std::mem::take(&mut *self.ingests()));
        drop(std::mem::take(&mut *self.sinks()));
        drop(std::mem::take(&mut *self.schedules()));
    }
}
