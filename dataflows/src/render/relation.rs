//! The walk from a relational plan to its rendered collections.

use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use timely::dataflow::operators::ToStream;
use timely::dataflow::Scope;
use weir_operators::cep::CepStats;
use weir_operators::repr::{Datum, Diff, Row, Tick};
use weir_operators::topk::{MonotonicTopK, RowOrder};

use super::collection::{empty_errs, filter, keyed, split, Coll, Errs};
use super::reduce::{empty_value, reduce_accumulable, reduce_general, reduce_monotonic};
use crate::plan::{AggFunc, Aggregate, JoinKind, OrderKey, RelPlan};

pub(super) struct Context<'s> {
    pub(super) scope: Scope<'s, Tick>,
    pub(super) collections: HashMap<String, Coll<'s>>,
    /// The state gauges of every pattern rendered so far.
    pub(super) cep_stats: Vec<CepStats>,
}

impl<'s> Context<'s> {
    pub(super) fn render(&mut self, plan: &RelPlan) -> (Coll<'s>, Errs<'s>) {
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
                let (matches, e2) = super::pattern::render(oks, m, stats);
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

/// The order of ORDER BY keys, as the top-k operator takes it.
fn row_order(keys: Vec<OrderKey>) -> RowOrder {
    Rc::new(move |a: &Row, b: &Row| OrderKey::compare_rows(&keys, a, b))
}
