//! Rendering: plans → differential dataflow, inside a dataflow the caller
//! builds (one per job, on every worker, in the same order).
//!
//! Every rendered relation is a pair of collections: the rows, and the rows
//! whose evaluation failed with the reason (Materialize's "errors as data"):
//! a bad row never stops the dataflow, it is routed to the dead letters.

use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::count::CountTotal;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::{AsCollection, VecCollection};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::{Probe, ToStream};
use timely::dataflow::Scope;
use weir_operators::cep::CepStats;
use weir_operators::repr::{Datum, Diff, OrdF64, Row, SqlType, Tick};
use weir_operators::sink::{deliver_changes, Delivery};
use weir_operators::topk::{MonotonicTopK, RowOrder};
use weir_operators::upsert::{Upsert, UpsertRecord};

use crate::expr::{eval_all, order_cmp, ScalarExpr};
use crate::plan::{AggFunc, Aggregate, JoinKind, OrderKey, RelPlan, SinkPlan, TablePlan, ViewPlan};

/// The arrangement a view is kept in, for peeks and for other dataflows:
/// key columns (or the whole row) → the row (or an empty row).
pub type ViewSpine = ValSpine<Row, Row, Tick, Diff>;
pub type ViewTrace = TraceAgent<ViewSpine>;

pub(crate) type Coll<'s> = VecCollection<'s, Tick, Row, Diff>;
/// Rows that failed evaluation, with the reason.
pub(crate) type Errs<'s> = VecCollection<'s, Tick, (String, Row), Diff>;

/// The input of one table inside one dataflow.
pub enum SourceInput {
    /// Append-only: every record is a new row.
    Append(InputSession<Tick, Row, Diff>),
    /// Keyed upserts (tables with a PRIMARY KEY).
    Upsert(InputSession<Tick, UpsertRecord, Diff>),
}

impl SourceInput {
    pub fn advance_to(&mut self, t: Tick) {
        match self {
            SourceInput::Append(i) => i.advance_to(t),
            SourceInput::Upsert(i) => i.advance_to(t),
        }
    }
    pub fn flush(&mut self) {
        match self {
            SourceInput::Append(i) => i.flush(),
            SourceInput::Upsert(i) => i.flush(),
        }
    }
    pub fn time(&self) -> Tick {
        match self {
            SourceInput::Append(i) => *i.time(),
            SourceInput::Upsert(i) => *i.time(),
        }
    }
}

/// A rendered view: its trace, and what its errors are collected into.
pub struct RenderedView {
    pub name: String,
    pub trace: ViewTrace,
    /// The rows of this worker's part of the view, counted from every update
    /// the view has produced (so it may run ahead of the trace's frontier).
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
pub fn render_job<'s>(
    scope: Scope<'s, Tick>,
    sources: &[TablePlan],
    views: &[ViewPlan],
    imports: &mut HashMap<String, ViewTrace>,
    errors: &ErrorSink,
    sinks: &[SinkPlan],
    sink_output: &mut dyn FnMut(&SinkPlan) -> SinkOutput,
) -> RenderedJob {
    let mut ctx = Context {
        scope,
        collections: HashMap::new(),
        cep_stats: Vec::new(),
    };
    let mut inputs = Vec::new();
    for table in sources {
        let (input, coll) = match &table.primary_key {
            None => {
                let (input, coll) = scope.new_collection::<Row, Diff>();
                (SourceInput::Append(input), coll)
            }
            Some(_) => {
                let (input, coll) = scope.new_collection::<UpsertRecord, Diff>();
                (SourceInput::Upsert(input), coll.upsert(&table.name))
            }
        };
        ctx.collections.insert(table.name.clone(), coll);
        inputs.push((table.name.clone(), input));
    }
    for (name, trace) in imports.iter_mut() {
        let coll = trace
            .import_named(scope, &format!("Import: {name}"))
            .as_collection(|k: &Row, v: &Row| if v.is_empty() { k.clone() } else { v.clone() });
        ctx.collections.insert(name.clone(), coll);
    }
    let mut rendered = Vec::new();
    for view in views {
        let (oks, errs) = ctx.render(&view.plan);
        let patterns = std::mem::take(&mut ctx.cep_stats);
        let name = view.name.clone();
        let sink = Rc::clone(errors);
        errs.inspect(move |((reason, row), _t, diff)| {
            sink.borrow_mut()
                .push((name.clone(), reason.clone(), row.clone(), *diff));
        });
        let rows = Rc::new(std::cell::Cell::new(0));
        let counter = Rc::clone(&rows);
        let oks = oks.inspect(move |(_, _, diff)| counter.set(counter.get() + diff));
        let key = view.key.clone();
        let arranged = oks
            .clone()
            .map(move |row| match &key {
                Some(cols) => (cols.iter().map(|&c| row[c].clone()).collect(), row),
                None => (row, Vec::new()),
            })
            .arrange_by_key_named(&format!("Arrange: {}", view.name));
        ctx.collections.insert(view.name.clone(), oks);
        let (probe, _) = arranged.stream.clone().probe();
        rendered.push(RenderedView {
            name: view.name.clone(),
            trace: arranged.trace,
            rows,
            probe,
            patterns,
        });
    }
    for sink in sinks {
        if let Some(coll) = ctx.collections.get(&sink.from) {
            deliver_changes(coll.clone(), &format!("Sink: {}", sink.name), sink_output(sink));
        }
    }
    RenderedJob {
        sources: inputs,
        views: rendered,
    }
}

/// Where a sink's changes go (see [`render_job`]).
pub type SinkOutput = Box<dyn FnMut(Delivery)>;

struct Context<'s> {
    scope: Scope<'s, Tick>,
    collections: HashMap<String, Coll<'s>>,
    /// The state gauges of every pattern rendered so far.
    cep_stats: Vec<CepStats>,
}

fn empty_errs<'s>(scope: Scope<'s, Tick>) -> Errs<'s> {
    Vec::<((String, Row), Tick, Diff)>::new()
        .to_stream(scope)
        .as_collection()
}

/// Splits a collection of results into values and errors.
fn split<'s, D: differential_dataflow::Data>(
    results: VecCollection<'s, Tick, Result<D, (String, Row)>, Diff>,
) -> (VecCollection<'s, Tick, D, Diff>, Errs<'s>) {
    let oks = results.clone().flat_map(|r| r.ok());
    let errs = results.flat_map(|r| r.err());
    (oks, errs)
}

/// Keeps the rows for which every predicate is TRUE; a predicate that
/// fails to evaluate sends the row to the errors.
fn filter<'s>(coll: Coll<'s>, predicates: Vec<ScalarExpr>) -> (Coll<'s>, Errs<'s>) {
    split(coll.flat_map(move |row| {
        for p in &predicates {
            match p.holds(&row) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(err) => return Some(Err((err.to_string(), row))),
            }
        }
        Some(Ok(row))
    }))
}

impl<'s> Context<'s> {
    fn render(&mut self, plan: &RelPlan) -> (Coll<'s>, Errs<'s>) {
        let scope = self.scope;
        match plan {
            RelPlan::Get { name } => {
                let coll = self
                    .collections
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| panic!("planner resolved {name} but it was not provided to render"));
                (coll, empty_errs(scope))
            }
            RelPlan::Constant { rows } => {
                // Constants exist once, not once per worker.
                let rows: Vec<(Row, Tick, Diff)> = if scope.index() == 0 {
                    rows.iter().map(|r| (r.clone(), 0, 1)).collect()
                } else {
                    Vec::new()
                };
                (rows.to_stream(scope).as_collection(), empty_errs(scope))
            }
            RelPlan::Map { input, exprs } => {
                let (oks, errs) = self.render(input);
                let exprs = exprs.clone();
                let (oks, e2) = split(oks.map(move |mut row| {
                    for e in &exprs {
                        match e.eval(&row) {
                            Ok(d) => row.push(d),
                            Err(err) => return Err((err.to_string(), row)),
                        }
                    }
                    Ok(row)
                }));
                (oks, errs.concat(e2))
            }
            RelPlan::Filter { input, predicates } => {
                let (oks, errs) = self.render(input);
                let (oks, e2) = filter(oks, predicates.clone());
                (oks, errs.concat(e2))
            }
            RelPlan::Project { input, outputs } => {
                let (oks, errs) = self.render(input);
                let outputs = outputs.clone();
                (
                    oks.map(move |row| outputs.iter().map(|&i| row[i].clone()).collect()),
                    errs,
                )
            }
            RelPlan::Distinct { input } => {
                let (oks, errs) = self.render(input);
                (oks.distinct_core::<Diff>(), errs)
            }
            RelPlan::MatchRecognize(m) => {
                let (oks, errs) = self.render(&m.input);
                let stats = CepStats::default();
                self.cep_stats.push(stats.clone());
                let (matches, e2) = crate::cep::render(oks, m, stats);
                (matches, errs.concat(e2))
            }
            RelPlan::UnionAll { inputs } => {
                let mut oks = Vec::new();
                let mut errs = Vec::new();
                for i in inputs {
                    let (o, e) = self.render(i);
                    oks.push(o);
                    errs.push(e);
                }
                (
                    differential_dataflow::collection::concatenate(scope, oks),
                    differential_dataflow::collection::concatenate(scope, errs),
                )
            }
            RelPlan::Join {
                left,
                right,
                left_key,
                right_key,
                residual,
                kind,
                right_arity,
            } => {
                let (l, le) = self.render(left);
                let (r, re) = self.render(right);
                let (lk, le2) = keyed(l.clone(), left_key.clone());
                let (rk, re2) = keyed(r, right_key.clone());
                // SQL equality never matches NULL keys.
                let no_nulls = |(k, _): &(Row, Row)| !k.iter().any(Datum::is_null);
                let joined = lk
                    .filter(no_nulls)
                    .join_map(rk.filter(no_nulls), |_k, lrow: &Row, rrow: &Row| {
                        let mut row = lrow.clone();
                        row.extend(rrow.iter().cloned());
                        row
                    });
                let (matched, je) = filter(joined, residual.clone());
                let errs = le.concat(re).concat(le2).concat(re2).concat(je);
                match kind {
                    JoinKind::Inner => (matched, errs),
                    JoinKind::Left => {
                        let nulls = vec![Datum::Null; *right_arity];
                        let arity_right = *right_arity;
                        let matched_left = matched
                            .clone()
                            .map(move |row| row[..row.len() - arity_right].to_vec())
                            .distinct_core::<Diff>();
                        let unmatched = l.map(|row| (row, ())).antijoin(matched_left).map(move |(mut row, ())| {
                            row.extend(nulls.iter().cloned());
                            row
                        });
                        (matched.concat(unmatched), errs)
                    }
                }
            }
            RelPlan::Reduce {
                input,
                group_key,
                aggregates,
                monotonic,
            } => {
                let (oks, errs) = self.render(input);
                let (keyed_rows, e2) = keyed(oks, group_key.clone());
                let extreme = |a: &Aggregate| matches!(a.func, AggFunc::Min | AggFunc::Max) && !a.distinct;
                let out = if aggregates.iter().all(Aggregate::is_accumulable) {
                    reduce_accumulable(keyed_rows, aggregates.clone())
                } else if *monotonic && aggregates.iter().all(|a| a.is_accumulable() || extreme(a)) {
                    reduce_monotonic(keyed_rows, aggregates.clone())
                } else {
                    reduce_general(keyed_rows, aggregates.clone())
                };
                let out = if group_key.is_empty() {
                    // An aggregate without GROUP BY has one row, also over
                    // empty input: add the empty-input row, and take it away
                    // again whenever the real row exists.
                    let default: Row = aggregates.iter().map(empty_value).collect();
                    let d2 = default.clone();
                    // The empty-input row exists once, not once per worker.
                    let defaults: Vec<(Row, Tick, Diff)> = if scope.index() == 0 {
                        vec![(default, 0, 1)]
                    } else {
                        Vec::new()
                    };
                    let defaults = defaults.to_stream(scope).as_collection();
                    let present = out.clone().map(move |_| d2.clone()).negate();
                    out.concat(defaults).concat(present)
                } else {
                    out
                };
                (out, errs.concat(e2))
            }
            RelPlan::TopK {
                input,
                partition_by,
                order_by,
                limit,
                monotonic,
                ..
            } => {
                let (oks, errs) = self.render(input);
                let part = partition_by.clone();
                let keyed_rows = oks.map(move |row| (part.iter().map(|&i| row[i].clone()).collect::<Row>(), row));
                let order = row_order(order_by.clone());
                let out = match (limit, monotonic) {
                    (Some(k), true) => keyed_rows.monotonic_top_k("ROW_NUMBER", *k, order),
                    _ => {
                        let limit = *limit;
                        keyed_rows
                            .reduce_named(
                                "TopK: ROW_NUMBER",
                                move |_key, input: &[(&Row, Diff)], output: &mut Vec<(Row, Diff)>| {
                                    let mut rows: Vec<&Row> = Vec::new();
                                    for (row, n) in input {
                                        for _ in 0..(*n).max(0) {
                                            rows.push(row);
                                        }
                                    }
                                    rows.sort_by(|a, b| order(a, b));
                                    for (i, row) in rows.into_iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
                                        let mut r = row.clone();
                                        r.push(Datum::Int(i as i64 + 1));
                                        output.push((r, 1));
                                    }
                                },
                            )
                            .map(|(_key, row)| row)
                    }
                };
                (out, errs)
            }
        }
    }
}

/// Pairs each row with its key; a key that fails to evaluate is an error.
fn keyed<'s>(coll: Coll<'s>, key: Vec<ScalarExpr>) -> (VecCollection<'s, Tick, (Row, Row), Diff>, Errs<'s>) {
    split(coll.map(move |row| match eval_all(&key, &row) {
        Ok(k) => Ok((k, row)),
        Err(e) => Err((e.to_string(), row)),
    }))
}

/// The order of ORDER BY keys, as the top-k operator takes it.
fn row_order(keys: Vec<OrderKey>) -> RowOrder {
    Rc::new(move |a: &Row, b: &Row| OrderKey::compare_rows(&keys, a, b))
}

/// The running state of a group's accumulable aggregates, kept as the
/// difference of a collection so that an arrangement holds one entry per
/// group (DESIGN.md §4).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggDiff {
    /// Rows in the group: count(*).
    rows: i64,
    /// Per aggregate: (non-null inputs, sum of inputs).
    accs: Vec<(i64, Decimal)>,
}

impl IsZero for AggDiff {
    fn is_zero(&self) -> bool {
        self.rows == 0 && self.accs.iter().all(|(n, s)| *n == 0 && s.is_zero())
    }
}

impl Semigroup for AggDiff {
    fn plus_equals(&mut self, rhs: &Self) {
        self.rows += rhs.rows;
        if self.accs.len() < rhs.accs.len() {
            self.accs.resize(rhs.accs.len(), (0, Decimal::ZERO));
        }
        for (a, b) in self.accs.iter_mut().zip(&rhs.accs) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

impl Multiply<Diff> for AggDiff {
    type Output = AggDiff;
    fn multiply(self, rhs: &Diff) -> AggDiff {
        let m = Decimal::from(*rhs);
        AggDiff {
            rows: self.rows * rhs,
            accs: self.accs.into_iter().map(|(n, s)| (n * rhs, s * m)).collect(),
        }
    }
}

fn reduce_accumulable<'s>(keyed_rows: VecCollection<'s, Tick, (Row, Row), Diff>, aggs: Vec<Aggregate>) -> Coll<'s> {
    let aggs2 = aggs.clone();
    keyed_rows
        .explode(move |(key, row)| {
            let accs = aggs2
                .iter()
                .map(|a| match a.func {
                    AggFunc::CountRows => (0, Decimal::ZERO),
                    _ => match a.expr.eval(&row) {
                        Ok(Datum::Null) | Err(_) => (0, Decimal::ZERO),
                        Ok(d) => (1, as_decimal(&d)),
                    },
                })
                .collect();
            Some((key, AggDiff { rows: 1, accs }))
        })
        .count_total_core::<Diff>()
        .flat_map(move |(key, state)| {
            // A group whose rows were all retracted has no output row.
            if state.rows <= 0 {
                return None;
            }
            let mut row = key;
            for (a, (n, sum)) in aggs
                .iter()
                .zip(state.accs.iter().chain(std::iter::repeat(&(0, Decimal::ZERO))))
            {
                row.push(match a.func {
                    AggFunc::CountRows => Datum::Int(state.rows),
                    AggFunc::Count => Datum::Int(*n),
                    _ if *n == 0 => Datum::Null,
                    AggFunc::Sum => sum_datum(*sum, a.input_type),
                    AggFunc::Avg => avg_datum(*sum, *n, a.input_type),
                    AggFunc::Min | AggFunc::Max => Datum::Null,
                });
            }
            Some(row)
        })
}

fn as_decimal(d: &Datum) -> Decimal {
    match d {
        Datum::Int(i) => Decimal::from(*i),
        Datum::Decimal(x) => *x,
        Datum::Float(f) => Decimal::try_from(f.get()).unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

fn sum_datum(sum: Decimal, input: SqlType) -> Datum {
    if input.is_integer() {
        match sum.to_i64() {
            Some(i) => Datum::Int(i),
            None => Datum::Decimal(sum),
        }
    } else if input.is_float() {
        Datum::Float(OrdF64::new(sum.to_f64().unwrap_or(f64::NAN)))
    } else {
        Datum::Decimal(sum)
    }
}

fn avg_datum(sum: Decimal, n: i64, input: SqlType) -> Datum {
    if input.is_float() {
        return Datum::Float(OrdF64::new(sum.to_f64().unwrap_or(f64::NAN) / n as f64));
    }
    let scale = match input {
        SqlType::Decimal(_, s) => (s as u32).max(6),
        _ => 6,
    };
    let mut avg =
        (sum / Decimal::from(n)).round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    avg.rescale(scale);
    Datum::Decimal(avg)
}

/// Aggregate `func` over `values` (NULLs skipped, except by `count(*)`),
/// with the same result types and rounding as grouped aggregates.
pub(crate) fn fold_aggregate(func: AggFunc, input_type: SqlType, values: Vec<Datum>) -> Datum {
    if func == AggFunc::CountRows {
        return Datum::Int(values.len() as i64);
    }
    let present: Vec<Datum> = values.into_iter().filter(|d| !d.is_null()).collect();
    let n = present.len() as i64;
    match func {
        AggFunc::CountRows | AggFunc::Count => Datum::Int(n),
        _ if n == 0 => Datum::Null,
        AggFunc::Min => present.into_iter().min_by(order_cmp).unwrap_or(Datum::Null),
        AggFunc::Max => present.into_iter().max_by(order_cmp).unwrap_or(Datum::Null),
        AggFunc::Sum | AggFunc::Avg if input_type.is_float() => {
            let sum: f64 = present.iter().map(|d| crate::expr::as_f64(d).unwrap_or(f64::NAN)).sum();
            let v = if func == AggFunc::Avg { sum / n as f64 } else { sum };
            Datum::Float(OrdF64::new(v))
        }
        AggFunc::Sum => sum_datum(present.iter().map(as_decimal).sum(), input_type),
        AggFunc::Avg => avg_datum(present.iter().map(as_decimal).sum(), n, input_type),
    }
}

/// The value of an aggregate over no rows: 0 for counts, NULL otherwise.
fn empty_value(a: &Aggregate) -> Datum {
    match a.func {
        AggFunc::CountRows | AggFunc::Count => Datum::Int(0),
        _ => Datum::Null,
    }
}

/// Min and max over append-only input, with accumulable aggregates beside
/// them: each min/max keeps only its group's current extreme (a monotonic
/// top-1; a value that is beaten can never come back), the rest stay in the
/// difference type. A last reduce per group assembles the row from at most
/// one entry per aggregate, so state is proportional to groups, not events
/// or distinct values (DESIGN.md §4).
fn reduce_monotonic<'s>(keyed_rows: VecCollection<'s, Tick, (Row, Row), Diff>, aggs: Vec<Aggregate>) -> Coll<'s> {
    /// Tags the accumulable part's entry among a group's parts.
    const ACCUMULATED: i64 = -1;
    let accumulable: Vec<Aggregate> = aggs.iter().filter(|a| a.is_accumulable()).cloned().collect();
    let n_acc = accumulable.len();
    // (key, [ACCUMULATED, accumulated values…]): the key is what precedes
    // the accumulated values.
    let mut parts = reduce_accumulable(keyed_rows.clone(), accumulable).map(move |row| {
        let split = row.len() - n_acc;
        let mut tagged = vec![Datum::Int(ACCUMULATED)];
        tagged.extend_from_slice(&row[split..]);
        (row[..split].to_vec(), tagged)
    });
    for (i, a) in aggs.iter().enumerate() {
        if a.is_accumulable() {
            continue;
        }
        let expr = a.expr.clone();
        let desc = a.func == AggFunc::Max;
        // Rows are (key…, value); NULLs take no part, as in SQL.
        let values = keyed_rows.clone().flat_map(move |(key, row)| match expr.eval(&row) {
            Ok(Datum::Null) | Err(_) => None,
            Ok(v) => {
                let mut r = key.clone();
                r.push(v);
                Some((key, r))
            }
        });
        let order: RowOrder = Rc::new(move |x: &Row, y: &Row| {
            let (vx, vy) = (&x[x.len() - 1], &y[y.len() - 1]);
            let o = order_cmp(vx, vy);
            if desc {
                o.reverse()
            } else {
                o
            }
        });
        let best = values
            .monotonic_top_k(&format!("{:?}", a.func), 1, order)
            .map(move |mut row| {
                row.pop(); // the row number
                let v = row.pop().unwrap_or(Datum::Null);
                (row, vec![Datum::Int(i as i64), v])
            });
        parts = parts.concat(best);
    }
    parts
        .reduce_named(
            "Reduce: min/max",
            move |_key, input: &[(&Row, Diff)], output: &mut Vec<(Row, Diff)>| {
                let part = |tag: i64| {
                    input
                        .iter()
                        .find(|(r, n)| *n > 0 && r.first() == Some(&Datum::Int(tag)))
                        .map(|(r, _)| &r[1..])
                };
                // A group exists once it has a row: then it has counted.
                let Some(acc) = part(ACCUMULATED) else { return };
                let mut acc = acc.iter();
                let mut out = Row::with_capacity(aggs.len());
                for (i, a) in aggs.iter().enumerate() {
                    out.push(if a.is_accumulable() {
                        acc.next().cloned().unwrap_or(Datum::Null)
                    } else {
                        part(i as i64).and_then(|v| v.first().cloned()).unwrap_or(Datum::Null)
                    });
                }
                output.push((out, 1));
            },
        )
        .map(|(mut key, vals)| {
            key.extend(vals);
            key
        })
}

/// Aggregates that need the group's values (min, max, DISTINCT, float
/// sums): a reduce over the distinct argument values of each group.
fn reduce_general<'s>(keyed_rows: VecCollection<'s, Tick, (Row, Row), Diff>, aggs: Vec<Aggregate>) -> Coll<'s> {
    let arg_exprs: Vec<ScalarExpr> = aggs.iter().map(|a| a.expr.clone()).collect();
    // Only the arguments are kept, so the state is one entry per distinct
    // argument tuple of a group, not per event.
    let args = keyed_rows.map(move |(key, row)| {
        let vals: Row = arg_exprs.iter().map(|e| e.eval(&row).unwrap_or(Datum::Null)).collect();
        (key, vals)
    });
    args.reduce_named(
        "Reduce: aggregates",
        move |_key, input: &[(&Row, Diff)], output: &mut Vec<(Row, Diff)>| {
            let rows: Diff = input.iter().map(|(_, n)| *n).sum();
            if rows <= 0 {
                return;
            }
            let mut out = Row::with_capacity(aggs.len());
            for (i, a) in aggs.iter().enumerate() {
                let values = input.iter().filter(|(v, n)| *n > 0 && !v[i].is_null());
                out.push(match a.func {
                    AggFunc::CountRows => Datum::Int(rows),
                    AggFunc::Count if a.distinct => {
                        // Values of one argument are not contiguous in the input,
                        // which is sorted by the tuple of all arguments.
                        let mut vs: Vec<&Datum> = values.map(|(v, _)| &v[i]).collect();
                        vs.sort();
                        vs.dedup();
                        Datum::Int(vs.len() as i64)
                    }
                    AggFunc::Count => Datum::Int(values.map(|(_, n)| *n).sum()),
                    AggFunc::Min => values
                        .map(|(v, _)| &v[i])
                        .min_by(|x, y| order_cmp(x, y))
                        .cloned()
                        .unwrap_or(Datum::Null),
                    AggFunc::Max => values
                        .map(|(v, _)| &v[i])
                        .max_by(|x, y| order_cmp(x, y))
                        .cloned()
                        .unwrap_or(Datum::Null),
                    AggFunc::Sum | AggFunc::Avg => {
                        let mut seen: std::collections::BTreeSet<&Datum> = std::collections::BTreeSet::new();
                        let mut n = 0i64;
                        let mut fsum = 0f64;
                        let mut dsum = Decimal::ZERO;
                        for (v, copies) in values {
                            let d = &v[i];
                            if a.distinct && !seen.insert(d) {
                                continue;
                            }
                            let copies = if a.distinct { 1 } else { *copies };
                            n += copies;
                            match d {
                                Datum::Float(f) => fsum += f.get() * copies as f64,
                                other => dsum += as_decimal(other) * Decimal::from(copies),
                            }
                        }
                        if n == 0 {
                            Datum::Null
                        } else if a.input_type.is_float() {
                            let v = if a.func == AggFunc::Avg { fsum / n as f64 } else { fsum };
                            Datum::Float(OrdF64::new(v))
                        } else if a.func == AggFunc::Avg {
                            avg_datum(dsum, n, a.input_type)
                        } else {
                            sum_datum(dsum, a.input_type)
                        }
                    }
                });
            }
            output.push((out, 1));
        },
    )
    .map(|(mut key, vals)| {
        key.extend(vals);
        key
    })
}
