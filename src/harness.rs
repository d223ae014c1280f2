//! The engine in process, with a clock the caller moves: a real event log
//! (RocksDB in a temporary directory), the real worker loop and sources
//! (decoding, dead letters, upserts), the real control plane and read path
//! — everything but HTTP. Events are appended at chosen ticks and views are
//! read at chosen times, so runs are exact and repeatable. The differential
//! test, the pattern-rule tests and the CEP benchmark run on it.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use weir_connectors::clock::{Clock, ManualClock};
use weir_connectors::dead_letters::DeadLetter;
use weir_connectors::log::Appended;
use weir_connectors::store::StateStore;
use weir_operators::repr::{Row, Tick};
use weir_queries::reader::{ReadOptions, ViewAnswer};

use crate::engine::{Engine, EngineError, JobStatus, SnapshotOutcome};
use crate::shared::Shared;
use crate::worker;

/// How long [`Harness::snapshot`] waits for a snapshot to be written.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a read waits for its time to be complete.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Harness {
    engine: Arc<Engine>,
    shared: Arc<Shared>,
    clock: ManualClock,
    runtime: tokio::runtime::Runtime,
    timely: Option<std::thread::JoinHandle<Result<(), String>>>,
    dead_letters: Receiver<DeadLetter>,
    // Dropped last: the store lives in it.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// An engine with `workers` timely workers on an empty log, its clock
    /// at tick 0.
    pub fn start(workers: usize) -> Result<Harness> {
        let dir = tempfile::tempdir().context("a temporary directory")?;
        Self::open(dir, ManualClock::new(0), workers)
    }

    /// Stops the engine and starts it again on the same files, with
    /// `workers` workers and the clock where it is: the jobs are restored
    /// from the job store, each from its latest snapshot if it has one (as
    /// `weir serve` does after a crash; nothing is snapshotted at the stop).
    pub fn restart(mut self, workers: usize) -> Result<Harness> {
        self.stop();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().context("a temporary directory")?);
        let clock = self.clock.clone();
        drop(self);
        let h = Self::open(dir, clock, workers)?;
        {
            let _guard = h.runtime.enter();
            h.engine.restore()?;
        }
        Ok(h)
    }

    fn open(dir: tempfile::TempDir, clock: ManualClock, workers: usize) -> Result<Harness> {
        let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock.clone()))?;
        let (dlq_tx, dead_letters) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(store, workers, crate::shared::DEFAULT_READ_CHUNK, dlq_tx)?);
        crate::snapshots::start_writer(Arc::clone(&shared), Duration::ZERO)?;
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let timely = worker::start(Arc::clone(&shared), workers, cmd_rx);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let engine = Engine::new(Arc::clone(&shared), cmd_tx);
        Ok(Harness {
            engine,
            shared,
            clock,
            runtime,
            timely: Some(timely),
            dead_letters,
            _dir: dir,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Submits a job, as `POST /v1/jobs` does.
    pub fn submit(&self, name: &str, sql: &str) -> Result<JobStatus, EngineError> {
        let _guard = self.runtime.enter();
        self.engine.submit(name, sql, false)
    }

    /// Moves the clock to `tick` (never back) and appends `events` (JSON)
    /// to a topic of the log at that tick, as ingest does.
    pub fn append(&self, tick: Tick, topic: &str, partition: Option<u32>, events: &[Vec<u8>]) -> Result<Appended> {
        if tick < self.clock.now() {
            bail!("tick {tick} is before the clock ({})", self.clock.now());
        }
        self.clock.set(tick);
        Ok(self.engine.append(topic, partition, events)?)
    }

    /// The clock's tick.
    pub fn now(&self) -> Tick {
        self.clock.now()
    }

    /// Moves the clock to `tick` with nothing appended: topics are sealed
    /// up to it, so views become complete through `tick - 1`.
    pub fn advance_to(&self, tick: Tick) {
        self.clock.set(tick);
        self.shared.wakers.wake();
    }

    /// Ends the sources of a job's dataflow (see
    /// [`crate::worker::Command::EndSources`]): its views are then complete
    /// for all times, and may be read at [`Harness::END`].
    pub fn end_sources(&self, job: &str) -> Result<(), EngineError> {
        self.engine.end_sources(job)
    }

    /// A time at which a view whose sources ended holds its final contents.
    pub const END: Tick = Tick::MAX - 1;

    /// The view's rows at exactly `as_of` (each as often as it occurs, in a
    /// stable order), waiting until the view is complete through it.
    pub fn read(&self, view: &str, as_of: Tick) -> Result<Vec<Row>> {
        let negative = weir_queries::peek::NEGATIVE_MULTIPLICITIES.load(std::sync::atomic::Ordering::Relaxed);
        let answer = self
            .read_view(view, &[], Some(as_of))
            .map_err(|e| anyhow!("reading view {view} at {as_of}: {e}"))?;
        if weir_queries::peek::NEGATIVE_MULTIPLICITIES.load(std::sync::atomic::Ordering::Relaxed) > negative {
            bail!("a view read in this process held a row with a negative multiplicity (last read: {view} at {as_of})");
        }
        Ok(answer.rows)
    }

    /// The rows of `view` passing `filters` (column = value) at the latest
    /// time complete, as `GET /v1/views/{view}?col=value` answers them, and
    /// that time.
    pub fn lookup(&self, view: &str, filters: &[(String, String)]) -> Result<(Tick, Vec<Row>)> {
        let answer = self
            .read_view(view, filters, None)
            .map_err(|e| anyhow!("reading view {view}: {e}"))?;
        Ok((answer.as_of, answer.rows))
    }

    fn read_view(
        &self,
        view: &str,
        filters: &[(String, String)],
        as_of: Option<Tick>,
    ) -> Result<ViewAnswer, EngineError> {
        let opts = ReadOptions {
            after: Vec::new(),
            as_of,
            timeout: READ_TIMEOUT,
        };
        self.runtime.block_on(self.engine.read_view(view, filters, None, &opts))
    }

    /// The dead letters recorded since the last call, in the order recorded.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.try_iter().collect()
    }

    /// Snapshots the job: the snapshot's time is chosen ahead of the clock,
    /// which is moved past it; returns that time once the snapshot is
    /// written. The caller appends after it.
    pub fn snapshot(&self, job: &str) -> Result<Tick> {
        let (number, at) = match self.engine.snapshot(job)? {
            SnapshotOutcome::Started { number, at } => (number, at),
            SnapshotOutcome::Skipped { reason } => bail!("snapshot of {job} skipped: {reason}"),
        };
        // Time moves on only once every worker has the request: the clock
        // jumps here, where the engine's would take the lead time.
        let deadline = std::time::Instant::now() + SNAPSHOT_TIMEOUT;
        while self
            .shared
            .snapshots
            .requests_taken(job, number)
            .is_some_and(|n| n < self.shared.workers)
        {
            if std::time::Instant::now() > deadline {
                bail!("the workers did not take the snapshot request in");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.advance_to(at + 1);
        loop {
            if self.shared.snapshots.last(job).is_some_and(|m| m.number >= number) {
                return Ok(at);
            }
            if let Some(e) = self.shared.snapshots.last_failure(job) {
                bail!("snapshot of {job} failed: {e}");
            }
            if std::time::Instant::now() > deadline {
                bail!("snapshot of {job} not written within {SNAPSHOT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What the job restored at start: (snapshot time, entries), once every
    /// worker has fed its part; an error if a worker failed.
    pub fn restored(&self, job: &str) -> Result<Option<(Tick, u64)>> {
        let Some(df) = self.engine.job_dataflow(job) else {
            bail!("no job {job}");
        };
        let deadline = std::time::Instant::now() + SNAPSHOT_TIMEOUT;
        loop {
            match self.shared.snapshots.restored(df) {
                None if std::time::Instant::now() > deadline => return Ok(None),
                None => {}
                Some(r) if r.error.is_some() => bail!("restore failed: {:?}", r.error),
                Some(r) if r.workers_done >= self.shared.workers => return Ok(Some((r.at, r.entries))),
                Some(_) => {}
            }
            if std::time::Instant::now() > deadline {
                bail!("restore not complete");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The view's partial matches in progress over all workers, when it
    /// has pattern rules.
    pub fn partial_matches(&self, view: &str) -> Option<i64> {
        let df = self.engine.view_dataflow(view)?;
        self.shared.frontiers.view_partial_matches(df, view)
    }
}

impl Harness {
    fn stop(&mut self) {
        self.engine.shutdown();
        if let Some(t) = self.timely.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}
