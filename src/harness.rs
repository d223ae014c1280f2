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
use weir_queries::reader::ReadOptions;

use crate::engine::{Engine, EngineError, JobStatus};
use crate::shared::Shared;
use crate::worker;

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
        let clock = ManualClock::new(0);
        let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock.clone()))?;
        let (dlq_tx, dead_letters) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(store, workers, 20_000, dlq_tx)?);
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
        let opts = ReadOptions {
            after: Vec::new(),
            as_of: Some(as_of),
            timeout: READ_TIMEOUT,
        };
        let answer = self
            .runtime
            .block_on(self.engine.read_view(view, &[], None, &opts))
            .map_err(|e| anyhow!("reading view {view} at {as_of}: {e}"))?;
        Ok(answer.rows)
    }

    /// The dead letters recorded since the last call, in the order recorded.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.try_iter().collect()
    }

    /// The view's partial matches in progress over all workers, when it
    /// has pattern rules.
    pub fn partial_matches(&self, view: &str) -> Option<i64> {
        let df = self.engine.view_dataflow(view)?;
        self.shared.frontiers.view_partial_matches(df, view)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.engine.shutdown();
        if let Some(t) = self.timely.take() {
            let _ = t.join();
        }
    }
}
