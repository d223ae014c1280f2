//! One installed dataflow on one worker: its sources, its views' traces
//! and what the worker publishes about them.

use std::cell::Cell;
use std::rc::Rc;

use prometheus::IntCounter;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use weir_connectors::source::{Decoded, Feeding, PartitionReader, TableDecoder};
use weir_dataflows::render::cut::CutTrace;
use weir_dataflows::render::{SourceInput, ViewTrace};
use weir_operators::cep::CepStats;
use weir_operators::repr::Tick;

/// Reads whose records the views have not yet processed, per dataflow:
/// while this many are in flight the sources wait. Without it a replay
/// reads the log faster than the dataflow computes, and the backlog (all
/// of history, on a replay) piles up in the dataflow's queues.
const MAX_READS_IN_FLIGHT: usize = 2;

/// One table read by a dataflow on this worker.
pub struct Source {
    pub(super) decoder: TableDecoder,
    pub(super) reader: PartitionReader,
    pub(super) input: SourceInput,
    /// Whether a view of this dataflow reads the table. A job's own table
    /// that only other jobs' views read is still decoded here, so that bad
    /// records reach the dead letters, but not fed: an input that no
    /// operator consumes keeps every record pushed into it (timely hands an
    /// unconsumed batch back to the sender, which resends it with the next).
    pub(super) feeds: bool,
    pub(super) ingested: IntCounter,
    pub(super) rejected: IntCounter,
}

/// Whether a decoded record fits a source's input (what [`push`] checks
/// before feeding it).
pub fn fits(input: &SourceInput, decoded: &Decoded) -> Result<(), &'static str> {
    match (input, decoded) {
        (SourceInput::Append(_), Decoded::Append(_))
        | (SourceInput::Upsert(_), Decoded::Upsert { .. } | Decoded::Delete { .. }) => Ok(()),
        (SourceInput::Append(_), Decoded::Delete { .. }) => Err("a delete needs a table with a PRIMARY KEY"),
        (SourceInput::Append(_), Decoded::Upsert { .. }) | (SourceInput::Upsert(_), Decoded::Append(_)) => {
            Err("upsert input for a table without a key")
        }
    }
}

/// Feeds one decoded record into a source's input at time `at` (not before
/// the input's time), once it [`fits`]. `seq` orders an upsert table's
/// records of one key.
pub fn push(input: &mut SourceInput, decoded: Decoded, seq: u64, at: Tick) -> Result<(), &'static str> {
    fits(input, &decoded)?;
    match (input, decoded) {
        (SourceInput::Append(inputs), Decoded::Append(row)) => inputs.push(row, at),
        (SourceInput::Upsert(input), Decoded::Upsert { key, row }) => {
            let at = at.max(*input.time());
            input.update_at((key, seq, Some(row)), at, 1);
        }
        (SourceInput::Upsert(input), Decoded::Delete { key }) => {
            let at = at.max(*input.time());
            input.update_at((key, seq, None), at, 1);
        }
        // Refused by `fits` above.
        _ => {}
    }
    Ok(())
}

pub struct Dataflow {
    /// Timely's index of the dataflow, to drop it.
    pub(super) index: usize,
    pub(super) sources: Vec<Source>,
    pub(super) views: Vec<View>,
    /// How it times records: those appended before its install are
    /// history (see [`Feeding`]).
    pub(super) feeding: Feeding,
    /// Per read, the latest time a record was fed at, until every view has
    /// passed it.
    pub(super) in_flight: Vec<Tick>,
    /// The arrangements of its stateful cuts, for snapshots.
    pub(super) cuts: Vec<Box<dyn CutTrace>>,
    /// How far the cuts may forget history already allowed.
    pub(super) cuts_since: Tick,
}

/// One view of a dataflow on this worker.
pub struct View {
    pub(super) name: String,
    pub(super) trace: ViewTrace,
    /// This worker's row count (see `RenderedView::rows`).
    pub(super) rows: Rc<Cell<i64>>,
    /// The state gauges of its pattern rules.
    pub(super) patterns: Vec<CepStats>,
    /// The upper of its trace (see `RenderedView::probe`).
    pub(super) upper: ProbeHandle<Tick>,
    /// The compaction frontier already allowed (never regresses).
    pub(super) since: Tick,
}

/// The frontier a probe has seen (`None`: closed).
pub fn upper(probe: &ProbeHandle<Tick>) -> Option<Tick> {
    probe.with_frontier(|f| f.first().copied())
}

impl Dataflow {
    /// Whether the sources may read more: forgets the reads every view has
    /// processed, then checks how many are left.
    pub fn may_read(&mut self) -> bool {
        let done = self
            .views
            .iter()
            .map(|v| upper(&v.upper).unwrap_or(Tick::MAX))
            .min()
            .unwrap_or(Tick::MAX);
        // Reads are not in time order (each source's records have their own
        // ticks), so any of them may be done.
        self.in_flight.retain(|&t| t >= done);
        // A read at a time the inputs have not passed cannot complete until
        // more is read (many records may share a time): only the others count.
        let frontier = self.sources.iter().map(|s| s.input.time()).min().unwrap_or(Tick::MAX);
        self.in_flight.iter().filter(|&&t| t < frontier).count() < MAX_READS_IN_FLIGHT
    }

    pub fn view_mut(&mut self, name: &str) -> Option<&mut View> {
        self.views.iter_mut().find(|v| v.name == name)
    }
}
