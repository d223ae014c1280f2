//! The walk from a relational plan to its rendered collections.

use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::operators::ThresholdTotal;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::ToStream;
use timely::dataflow::Scope;
use weir_operators::cep::CepStats;
use weir_operators::repr::{Datum, Diff, Row, Tick};
use weir_operators::topk::{numbered_copy, MonotonicTopK, RowOrder};

use super::collection::{empty_errs, filter, keyed, split, Coll, Errs};
use super::cut::Cuts;
use super::reduce::{arrange_rows, empty_value, reduce_accumulable, reduce_general, reduce_rows};
use crate::plan::{JoinKind, OrderKey, RelPlan};

pub(super) struct Context<'s> {
    pub(super) scope: Scope<'s, Tick>,
    /// Each named collection, and whether it is *fresh*: a stateless
    /// function of the sources (and constants), so that its first
    /// arrangement is a stateful cut (see [`super::cut`]).
    pub(super) collections: HashMap<String, (Coll<'s>, bool)>,
    /// The narrowed reads of append-only sources (fresh): (table, columns
    /// kept) → their own input's rows (see [`super::AppendInputs`]).
    pub(super) narrowed: HashMap<(String, Vec<usize>), Coll<'s>>,
    /// The state gauges of every pattern rendered so far.
    pub(super) cep_stats: Vec<CepStats>,
    pub(super) cuts: Cuts,
}

/// A rendered relation: its rows, its errors, and whether it is fresh (see
/// [`Context::collections`]).
pub(super) struct Rendered<'s> {
    pub(super) oks: Coll<'s>,
    pub(super) errs: Errs<'s>,
    pub(super) fresh: bool,
}

impl<'s> Context<'s> {
    pub(super) fn render(&mut self, plan: &RelPlan) -> Rendered<'s> {
        let (oks, errs, fresh) = self.render_parts(plan);
        Rendered { oks, errs, fresh }
    }

    fn render_parts(&mut self, plan: &RelPlan) -> (Coll<'s>, Errs<'s>, bool) {
        let scope = self.scope;
        match plan {
            RelPlan::Get { name } => {
                let (coll, fresh) = self
                    .collections
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| panic!("planner resolved {name} but it was not provided to render"));
                (coll, empty_errs(scope), fresh)
            }
            RelPlan::Constant { rows } => {
                // Constants exist once, not once per worker; a restored
                // dataflow has them in its cuts already.
                let rows: Vec<(Row, Tick, Diff)> = if scope.index() == 0 && !self.cuts.restoring() {
                    rows.iter().map(|r| (r.clone(), 0, 1)).collect()
                } else {
                    Vec::new()
                };
                (rows.to_stream(scope).as_collection(), empty_errs(scope), true)
            }
            RelPlan::Map { input, exprs } => {
                let (oks, errs, fresh) = self.render_parts(input);
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
                (oks, errs.concat(e2), fresh)
            }
            RelPlan::Filter { input, predicates } => {
                let (oks, errs, fresh) = self.render_parts(input);
                let (oks, e2) = filter(oks, predicates.clone());
                (oks, errs.concat(e2), fresh)
            }
            RelPlan::Project { input, outputs } => {
                if let RelPlan::Get { name } = &**input {
                    if let Some(coll) = self.narrowed.get(&(name.clone(), outputs.clone())) {
                        return (coll.clone(), empty_errs(scope), true);
                    }
                }
                let (oks, errs, fresh) = self.render_parts(input);
                let outputs = outputs.clone();
                // Each column that appears once moves out of the row instead
                // of being copied; only a repeated one is cloned.
                let mut seen = std::collections::BTreeSet::new();
                let distinct = outputs.iter().all(|&i| seen.insert(i));
                (
                    oks.map(move |mut row| {
                        if distinct {
                            outputs
                                .iter()
                                .map(|&i| std::mem::replace(&mut row[i], Datum::Null))
                                .collect()
                        } else {
                            outputs.iter().map(|&i| row[i].clone()).collect()
                        }
                    }),
                    errs,
                    fresh,
                )
            }
            RelPlan::Distinct { input } => {
                let (oks, errs, fresh) = self.render_parts(input);
                let arranged = if fresh {
                    self.cuts.rows(scope, oks, "Distinct")
                } else {
                    oks.arrange_by_self_named("Arrange: Distinct")
                };
                (arranged.distinct_total_core::<Diff>(), errs, false)
            }
            RelPlan::MatchRecognize(m) => {
                let (oks, errs, fresh) = self.render_parts(&m.input);
                // The rule keeps its own state (partitions, partial matches,
                // the watermark); its matches so far are restored at the
                // first arrangement after it, as if it were a source.
                let snapshots = if fresh {
                    Some(self.cuts.pattern())
                } else {
                    self.cuts
                        .refuse("a MATCH_RECOGNIZE over computed rows (another view's changes) is not snapshotted");
                    None
                };
                let stats = CepStats::default();
                self.cep_stats.push(stats.clone());
                let (matches, e2) = super::pattern::render(oks, m, stats, snapshots);
                (matches, errs.concat(e2), fresh)
            }
            RelPlan::UnionAll { inputs } => {
                let mut oks = Vec::new();
                let mut errs = Vec::new();
                let mut fresh = Vec::new();
                for i in inputs {
                    let (o, e, f) = self.render_parts(i);
                    oks.push(o);
                    errs.push(e);
                    fresh.push(f);
                }
                let all_fresh = fresh.iter().all(|f| *f);
                if !all_fresh {
                    // A cut after the union would restore the computed
                    // inputs' rows, which come back by themselves: each
                    // input of source rows gets a cut of its own instead
                    // (an arrangement of its rows kept for the snapshot).
                    for (o, f) in oks.iter_mut().zip(&fresh) {
                        if *f {
                            let rows = o.clone().map(|row| (row, Row::new()));
                            let (_, all) = self.cuts.keyed(scope, rows, "Union input");
                            *o = all.map(|(row, _)| row);
                        }
                    }
                }
                (
                    differential_dataflow::collection::concatenate(scope, oks),
                    differential_dataflow::collection::concatenate(scope, errs),
                    all_fresh,
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
                let (l, le, lfresh) = self.render_parts(left);
                let (r, re, rfresh) = self.render_parts(right);
                let (lk, le2) = keyed(l.clone(), left_key.clone());
                let (rk, re2) = keyed(r, right_key.clone());
                // SQL equality never matches NULL keys.
                let no_nulls = |(k, _): &(Row, Row)| !k.iter().any(Datum::is_null);
                let la = arrange_rows(&mut self.cuts, scope, lk.filter(no_nulls), lfresh, "Join left");
                let ra = arrange_rows(&mut self.cuts, scope, rk.filter(no_nulls), rfresh, "Join right");
                let joined = la.join_core(ra, |_k, lrow: &[Datum], rrow: &[Datum]| {
                    let mut row = Row::with_capacity(lrow.len() + rrow.len());
                    row.extend_from_slice(lrow);
                    row.extend_from_slice(rrow);
                    Some(row)
                });
                let (matched, je) = filter(joined, residual.clone());
                let errs = le.concat(re).concat(le2).concat(re2).concat(je);
                match kind {
                    JoinKind::Inner => (matched, errs, false),
                    JoinKind::Left => {
                        // The unmatched left rows need the left input
                        // itself, restored at a cut of its own.
                        let l = if lfresh {
                            let (_, all) = self.cuts.keyed(scope, l.map(|row| (row, Row::new())), "Join left rows");
                            all.map(|(row, _)| row)
                        } else {
                            l
                        };
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
                        (matched.concat(unmatched), errs, false)
                    }
                }
            }
            RelPlan::Reduce {
                input,
                group_key,
                aggregates,
                monotonic,
            } => {
                let (oks, errs, fresh) = self.render_parts(input);
                let (keyed_rows, e2) = keyed(oks, group_key.clone());
                let cuts = fresh.then_some(&mut self.cuts);
                // Over append-only input a min or max is accumulable too.
                let out = if aggregates
                    .iter()
                    .all(|a| a.is_accumulable() || (*monotonic && a.is_extreme()))
                {
                    reduce_accumulable(cuts, scope, keyed_rows, aggregates.clone())
                } else {
                    reduce_general(cuts, scope, keyed_rows, aggregates.clone())
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
                (out, errs.concat(e2), false)
            }
            RelPlan::TopK {
                input,
                partition_by,
                order_by,
                limit,
                monotonic,
                ..
            } => {
                let (oks, errs, fresh) = self.render_parts(input);
                let part = partition_by.clone();
                let key_of = move |row: &Row| part.iter().map(|&i| row[i].clone()).collect::<Row>();
                let keyed_rows = oks.map({
                    let key_of = key_of.clone();
                    move |row| (key_of(&row), row)
                });
                let order = row_order(order_by.clone());
                let out = match (limit, monotonic) {
                    (Some(k), true) if fresh => {
                        let k = *k;
                        // A snapshotted row is a kept input row.
                        let back = move |row: Row| (key_of(&row), row);
                        self.cuts.own_state(scope, keyed_rows, back, move |rows, capture| {
                            rows.monotonic_top_k("ROW_NUMBER", k, order, Some(capture))
                        })
                    }
                    (Some(k), true) => keyed_rows.monotonic_top_k("ROW_NUMBER", *k, order, None),
                    _ => {
                        let limit = *limit;
                        let arranged = arrange_rows(&mut self.cuts, scope, keyed_rows, fresh, "TopK: ROW_NUMBER");
                        reduce_rows(
                            arranged,
                            "TopK: ROW_NUMBER",
                            move |_key, input: &[(&[Datum], Diff)], output: &mut Vec<(Row, Diff)>| {
                                let mut rows: Vec<&[Datum]> = Vec::new();
                                for (row, n) in input {
                                    for _ in 0..(*n).max(0) {
                                        rows.push(row);
                                    }
                                }
                                rows.sort_by(|a, b| order(a, b));
                                for (i, row) in rows.into_iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
                                    output.push((numbered_copy(row, i), 1));
                                }
                            },
                        )
                        .map(|(_key, row)| row)
                    }
                };
                (out, errs, false)
            }
        }
    }
}

/// The order of ORDER BY keys, as the top-k operator takes it.
fn row_order(keys: Vec<OrderKey>) -> RowOrder {
    Rc::new(move |a: &[Datum], b: &[Datum]| OrderKey::compare_rows(&keys, a, b))
}
