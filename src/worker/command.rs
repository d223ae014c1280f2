//! The commands every worker executes, in the same order on every worker
//! (DESIGN.md §3).

use serde::{Deserialize, Serialize};
use weir_connectors::source::Feeding;
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::plan::{SinkPlan, TablePlan, ViewPlan};
use weir_operators::repr::Tick;
use weir_queries::PeekCommand;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Install(Install),
    Drop {
        df: DataflowId,
    },
    Peek(PeekCommand),
    /// Ends the streams of a dataflow's sources: its inputs close, so
    /// operators waiting for more input (a pattern rule's pending matches)
    /// decide as at the end of the stream, and its views are complete for
    /// all times. The engine's own sources never end; bounded runs (the
    /// harness) end them.
    EndSources {
        df: DataflowId,
    },
    /// Reads every stateful cut of a dataflow at `at` and hands this
    /// worker's part to the snapshot writer (see `crate::snapshots`).
    Snapshot(SnapshotCommand),
    Shutdown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotCommand {
    pub df: DataflowId,
    pub job: String,
    pub number: u64,
    /// A time the dataflow has completed on every worker, held by the engine.
    pub at: Tick,
}

/// The snapshot a dataflow starts from instead of an empty state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestorePoint {
    /// The job whose snapshot it is (a point-in-time read's dataflow has a
    /// name of its own).
    pub job: String,
    pub number: u64,
    pub at: Tick,
    /// The worker count it was written with: one part each.
    pub parts: u32,
}

/// Builds one version of a job as a dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Install {
    pub df: DataflowId,
    pub job: String,
    pub sources: Vec<TablePlan>,
    pub views: Vec<ViewPlan>,
    /// Views of other dataflows this one reads: (view, its dataflow).
    pub imports: Vec<(String, DataflowId)>,
    /// How records are timed (see [`Feeding`]).
    pub feeding: Feeding,
    /// The job's changelog sinks.
    pub sinks: Vec<SinkPlan>,
    /// Records appended before this time are skipped (a job that starts
    /// from the latest events, or one restored: after its snapshot's time);
    /// 0 reads the whole history.
    pub skip_before: Tick,
    /// Restores this snapshot into the dataflow's cuts before it reads.
    pub restore: Option<RestorePoint>,
    /// Reads nothing appended after this time (a point-in-time read's
    /// dataflow, complete as of it and no further).
    pub until: Option<Tick>,
}
