//! Rendering: plans → differential dataflow, inside a dataflow the caller
//! builds (one per job, on every worker, in the same order).
//!
//! Every rendered relation is a pair of collections: the rows, and the rows
//! whose evaluation failed with the reason (Materialize's "errors as data"):
//! a bad row never stops the dataflow, it is routed to the dead letters.
//!
//! # Layout
//! Each file uses only the ones listed before it.
//! - `collection`: a rendered relation's rows and errors, and the helpers
//!   that route a row whose evaluation fails to the errors.
//! - `cut`: the stateful cuts a snapshot reads and a restore feeds.
//! - `reduce`: `GROUP BY` aggregates, by how much state each kind needs.
//! - `pattern`: `MATCH_RECOGNIZE`: the planned conditions and measures
//!   evaluated for the pattern operator of [`weir_operators::cep`].
//! - `relation`: the walk from a plan to its collections.
//! - this file: a job's inputs, views and sinks around that walk
//!   ([`render_job`]).

mod collection;
pub mod cut;
mod pattern;
mod publish;
mod reduce;
mod relation;

use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::Probe;
use timely::dataflow::Scope;
use weir_operators::cep::CepStats;
use weir_operators::read_copy::ShardWriter;
use weir_operators::repr::{Datum, Diff, Row, Tick};
use weir_operators::row_batch::ArrangeRows;
use weir_operators::sink::{deliver_changes, Delivery};
use weir_operators::upsert::{Upsert, UpsertRecord};

use crate::plan::{SinkPlan, TablePlan, ViewPlan};
use cut::Cuts;
use relation::Context;

// The aggregation monoid lives with the operators (DESIGN.md §1); this path
// stays for code that named it here.

/// The arrangement a view is kept in, for peeks and for other dataflows:
/// key columns (or the whole row) → the row (or an empty row).
pub type ViewTrace = weir_operators::row_batch::RowTrace;

/// The input of one table inside one dataflow.
pub enum SourceInput {
    /// Append-only: every record is a new row.
    Append(AppendInputs),
    /// Keyed upserts (tables with a PRIMARY KEY).
    Upsert(InputSession<Tick, UpsertRecord, Diff>),
}

/// An append-only table's inputs in one dataflow: one per way its plans
/// read it. A read narrowed to some columns (a `Project` right over the
/// table, see [`crate::plan::RelPlan::reads`]) gets those columns straight from the
/// decoded row, so no operator copies whole rows only to drop most of them.
pub struct AppendInputs {
    /// A whole-row input, if any, is last: it takes the decoded row itself.
    reads: Vec<(Columns, InputSession<Tick, Row, Diff>)>,
}

/// The columns a read keeps, or `None` for whole rows.
type Columns = Option<Vec<usize>>;

impl AppendInputs {
    /// Feeds one decoded row (of the table's full arity) at `at`, or at the
    /// inputs' time if that is later.
    pub fn push(&mut self, row: Row, at: Tick) {
        let Some(((cols, last), rest)) = self.reads.split_last_mut() else {
            return;
        };
        let at = at.max(*last.time());
        for (cols, input) in rest {
            let narrowed = match cols {
                Some(cols) => narrow(&row, cols),
                None => row.clone(),
            };
            input.update_at(narrowed, at, 1);
        }
        let row = match cols {
            Some(cols) => narrow(&row, cols),
            None => row,
        };
        last.update_at(row, at, 1);
    }
}

fn narrow(row: &[Datum], cols: &[usize]) -> Row {
    cols.iter().map(|&c| row[c].clone()).collect()
}

impl SourceInput {
    pub fn advance_to(&mut self, t: Tick) {
        match self {
            SourceInput::Append(a) => a.reads.iter_mut().for_each(|(_, i)| i.advance_to(t)),
            SourceInput::Upsert(i) => i.advance_to(t),
        }
    }
    pub fn flush(&mut self) {
        match self {
            SourceInput::Append(a) => a.reads.iter_mut().for_each(|(_, i)| i.flush()),
            SourceInput::Upsert(i) => i.flush(),
        }
    }
    /// The inputs' time (an append table's inputs move together).
    pub fn time(&self) -> Tick {
        match self {
            SourceInput::Append(a) => a.reads.first().map_or(0, |(_, i)| *i.time()),
            SourceInput::Upsert(i) => *i.time(),
        }
    }
}

/// A rendered view: its trace, and what its errors are collected into.
pub struct RenderedView {
    pub name: String,
    pub trace: ViewTrace,
    /// The rows of this worker's part of the view, summed over the batches
    /// its arrangement has produced.
    pub rows: Rc<std::cell::Cell<i64>>,
    /// How far the view's arrangement has been built: its trace's upper,
    /// without walking the trace's batches (which grow with the history
    /// kept for reads).
    pub probe: timely::dataflow::operators::probe::Handle<Tick>,
    /// State gauges of the view's `MATCH_RECOGNIZE` operators, if any.
    pub patterns: Vec<CepStats>,
}

/// Collects evaluation errors on this worker: (view, reason, row, diff).
pub type ErrorSink = Rc<std::cell::RefCell<Vec<(String, String, Row, Diff)>>>;

/// What `render_job` returns: the inputs to feed and the views to read.
pub struct RenderedJob {
    pub sources: Vec<(String, SourceInput)>,
    pub views: Vec<RenderedView>,
    /// The dataflow's stateful cuts, for snapshots and restores.
    pub cuts: Cuts,
}

/// Renders a job's views into `scope`.
///
/// `sources` are the tables this dataflow reads (its own and other jobs'):
/// each gets an input here. `imports` are the traces of views of other jobs
/// that the job reads; they are imported, not recomputed.
///
/// Each of `sinks` gets the changes of its view through the function
/// `sink_output` returns for it (called on worker 0 only; see
/// [`deliver_changes`]).
///
/// `restore`: the dataflow will be fed a snapshot at its cuts (see
/// [`cut`]), so constants render empty; operators with their own state read
/// theirs through it at construction.
///
/// `read_copy` gives, per view, the writer of this worker's shard of its
/// read-optimised copy (`None`: the view has none), fed from the view's
/// arrangement.
#[allow(clippy::too_many_arguments)]
pub fn render_job<'s>(
    scope: Scope<'s, Tick>,
    restore: Option<cut::StateSource>,
    sources: &[TablePlan],
    views: &[ViewPlan],
    imports: &mut HashMap<String, ViewTrace>,
    errors: &ErrorSink,
    sinks: &[SinkPlan],
    sink_output: &mut dyn FnMut(&SinkPlan) -> SinkOutput,
    read_copy: &mut dyn FnMut(&str) -> Option<ShardWriter>,
) -> RenderedJob {
    let mut ctx = Context {
        scope,
        collections: HashMap::new(),
        narrowed: HashMap::new(),
        cep_stats: Vec::new(),
        cuts: Cuts {
            state_source: restore,
            ..Cuts::default()
        },
    };
    // Every read of every view, for the inputs of the tables below.
    let reads_of_views: Vec<(&str, Option<&[usize]>)> = views.iter().flat_map(|v| v.plan.reads()).collect();
    let mut sources_in = Vec::new();
    for table in sources {
        match &table.primary_key {
            None => {
                // One input per distinct read; whole rows, if a reader takes
                // them, last. A table none of the views reads keeps one
                // input, which is never fed (an input no operator consumes
                // would keep every record pushed into it).
                let mut reads: Vec<Columns> = Vec::new();
                for &(name, cols) in &reads_of_views {
                    let cols = cols.map(<[usize]>::to_vec);
                    if name == table.name && !reads.contains(&cols) {
                        reads.push(cols);
                    }
                }
                reads.sort_by_key(Option::is_none);
                if reads.is_empty() {
                    reads.push(None);
                }
                let mut inputs = Vec::new();
                for cols in reads {
                    let (input, coll) = scope.new_collection::<Row, Diff>();
                    match &cols {
                        Some(c) => {
                            ctx.narrowed.insert((table.name.clone(), c.clone()), coll);
                        }
                        None => {
                            ctx.collections.insert(table.name.clone(), (coll, true));
                        }
                    }
                    inputs.push((cols, input));
                }
                sources_in.push((table.name.clone(), SourceInput::Append(AppendInputs { reads: inputs })));
            }
            Some(key) => {
                let (input, coll) = scope.new_collection::<UpsertRecord, Diff>();
                let key = key.clone();
                let name = table.name.clone();
                // A snapshotted row goes back in as an upsert of its key,
                // older than every record after the snapshot.
                let back = move |row: Row| (key.iter().map(|&c| row[c].clone()).collect(), 0, Some(row));
                let rows = ctx
                    .cuts
                    .own_state(scope, coll, back, |c, capture| c.upsert(&name, Some(capture)));
                ctx.collections.insert(table.name.clone(), (rows, false));
                sources_in.push((table.name.clone(), SourceInput::Upsert(input)));
            }
        }
    }
    for (name, trace) in imports.iter_mut() {
        let coll = trace
            .import_named(scope, &format!("Import: {name}"))
            .as_collection(|k: &[Datum], v: &[Datum]| if v.is_empty() { k.to_vec() } else { v.to_vec() });
        // Restored by its own dataflow: not part of this one's cuts.
        ctx.collections.insert(name.clone(), (coll, false));
    }
    let mut rendered = Vec::new();
    for view in views {
        let relation::Rendered { oks, errs, fresh } = ctx.render(&view.plan);
        let patterns = std::mem::take(&mut ctx.cep_stats);
        let name = view.name.clone();
        let sink = Rc::clone(errors);
        errs.inspect(move |((reason, row), _t, diff)| {
            sink.borrow_mut()
                .push((name.clone(), reason.clone(), row.clone(), *diff));
        });
        let rows = Rc::new(std::cell::Cell::new(0));
        let key = view.key.clone();
        let keyed = oks.map(move |row| match &key {
            Some(cols) => (cols.iter().map(|&c| row[c].clone()).collect(), row),
            None => (row, Vec::new()),
        });
        // A view of source rows is its own stateful cut: its arrangement.
        let (arranged, keyed) = if fresh {
            ctx.cuts.keyed(scope, keyed, &view.name)
        } else {
            let all = keyed.clone();
            (keyed.arrange_rows_named(&format!("Arrange: {}", view.name)), all)
        };
        // Only a view that a later view or a sink of the job reads keeps its
        // rows as a collection: a second reader of `keyed` would make timely
        // copy every update of the view for it.
        let read_later =
            reads_of_views.iter().any(|&(n, _)| n == view.name) || sinks.iter().any(|s| s.from == view.name);
        if read_later {
            let oks = keyed.map(|(k, v)| if v.is_empty() { k } else { v });
            ctx.collections.insert(view.name.clone(), (oks, false));
        }
        publish::count_rows(&arranged, &format!("Count: {}", view.name), Rc::clone(&rows));
        let (probe, _) = arranged.stream.clone().probe();
        if let Some(writer) = read_copy(&view.name) {
            publish::publish_copy(&arranged, &format!("Publish: {}", view.name), writer);
        }
        rendered.push(RenderedView {
            name: view.name.clone(),
            trace: arranged.trace,
            rows,
            probe,
            patterns,
        });
    }
    for sink in sinks {
        if let Some((coll, _)) = ctx.collections.get(&sink.from) {
            deliver_changes(coll.clone(), &format!("Sink: {}", sink.name), sink_output(sink));
        }
    }
    RenderedJob {
        sources: sources_in,
        views: rendered,
        cuts: ctx.cuts,
    }
}

/// Where a sink's changes go (see [`render_job`]).
pub type SinkOutput = Box<dyn FnMut(Delivery)>;
