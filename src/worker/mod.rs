//! The timely worker runtime: executes the sequenced commands, feeds the
//! sources from the event log, and answers peeks from the arrangements.
//!
//! Every worker runs the same loop. Commands reach worker 0 over a channel
//! and are broadcast in one order to all workers by timely's `Sequencer`
//! (DESIGN.md §3), so every worker builds the same dataflows in the same
//! order, and a peek is answered after the install it follows. The loop
//! dispatches; each command and each phase of a round has a function of
//! its own.
//!
//! # Layout
//! - `command`: the [`Command`]s.
//! - `dataflow`: one installed dataflow on one worker.
//! - `install`: `Command::Install`.
//! - `sources`: feeding the sources from the log, each round.
//! - `publish`: the views' progress and errors, each round.
//! - `peek`: `Command::Peek`, answered now or after a later round.
//! - `snapshot`: `Command::Snapshot`, and restoring a snapshot at install.

mod command;
mod dataflow;
mod install;
mod peek;
mod publish;
mod snapshot;
mod sources;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::synchronization::Sequencer;
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::render::ErrorSink;
use weir_operators::repr::Tick;
use weir_queries::PeekCommand;

pub use command::{Command, Install, RestorePoint, SnapshotCommand};
use dataflow::Dataflow;
pub use install::table_format;

use crate::shared::{lock, now_ms, Shared};

/// How long an idle worker parks: how often time moves on with nothing to
/// read (new records and commands wake the workers at once).
const IDLE_PARK_MS: u64 = 100;

/// What one worker holds between rounds.
pub struct WorkerState {
    shared: Arc<Shared>,
    index: usize,
    peers: usize,
    dataflows: HashMap<DataflowId, Dataflow>,
    pending_peeks: Vec<PeekCommand>,
    /// Snapshots whose time this worker's cuts have not completed yet.
    pending_snapshots: Vec<SnapshotCommand>,
    errors: ErrorSink,
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
    shared.wakers.register_current();
    let mut sequencer: Sequencer<Command> = Sequencer::new(worker, Instant::now());
    let mut state = WorkerState::new(shared, worker.index(), worker.peers());
    loop {
        if let Some(rx) = &commands {
            while let Ok(cmd) = rx.try_recv() {
                sequencer.push(cmd);
            }
        }
        let mut running = true;
        for cmd in sequencer.by_ref() {
            running &= state.execute(worker, cmd);
        }
        if !running {
            state.drop_all(worker);
            return;
        }
        let now = now_ms();
        // More is there to read right now: step without parking. Otherwise
        // park until an append or a command wakes the worker (timely does
        // not park while operators have work): spinning would take the
        // cores that a broker or the producers on the same machine need.
        let more_to_read = state.feed(now);
        worker.step_or_park(Some(Duration::from_millis(if more_to_read { 0 } else { IDLE_PARK_MS })));
        state.publish(now);
    }
}

impl WorkerState {
    pub fn new(shared: Arc<Shared>, index: usize, peers: usize) -> WorkerState {
        WorkerState {
            shared,
            index,
            peers,
            dataflows: HashMap::new(),
            pending_peeks: Vec::new(),
            pending_snapshots: Vec::new(),
            errors: Rc::new(std::cell::RefCell::new(Vec::new())),
        }
    }

    /// Executes one command; false for `Shutdown`.
    pub fn execute(&mut self, worker: &mut timely::worker::Worker, cmd: Command) -> bool {
        match cmd {
            Command::Install(install) => install::install(self, worker, install),
            Command::Drop { df } => drop_dataflow(self, worker, df),
            Command::Peek(p) => peek::receive(self, p),
            Command::Snapshot(s) => snapshot::receive(self, s),
            Command::EndSources { df } => {
                if let Some(d) = self.dataflows.get_mut(&df) {
                    d.sources.clear();
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Feeds every dataflow's sources from the log (see `sources`); true
    /// when more is there to read right now.
    pub fn feed(&mut self, now: Tick) -> bool {
        sources::feed(self, now)
    }

    /// After a step: evaluation errors to the dead letters, progress to the
    /// read side (compacting traces as readers allow), peeks answered.
    pub fn publish(&mut self, now: Tick) {
        publish::dead_letters(self, now);
        publish::progress(self);
        peek::answer_pending(self);
        snapshot::read_pending(self);
    }

    fn drop_all(&mut self, worker: &mut timely::worker::Worker) {
        let all: Vec<DataflowId> = self.dataflows.keys().copied().collect();
        for df in all {
            drop_dataflow(self, worker, df);
        }
    }
}

/// `Command::Drop` (and shutdown): the dataflow's inputs and traces go
/// first, then timely drops the dataflow; the read side forgets it.
fn drop_dataflow(state: &mut WorkerState, worker: &mut timely::worker::Worker, df: DataflowId) {
    if let Some(d) = state.dataflows.remove(&df) {
        drop(d.sources);
        drop(d.views);
        worker.drop_dataflow(d.index);
    }
    state.shared.frontiers.forget(df);
    state.shared.copies.forget(df);
    state.shared.sources.forget(df);
    state.shared.snapshots.forget(df);
}
