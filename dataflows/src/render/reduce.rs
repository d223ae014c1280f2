//! `GROUP BY` aggregates, rendered by how much state each kind needs:
//! accumulable ones, and min/max over append-only input, in the difference
//! type; the rest over each group's distinct values.

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::operators::count::CountTotal;
use differential_dataflow::VecCollection;
use rust_decimal::Decimal;
use timely::dataflow::Scope;
use weir_operators::aggregate::{as_decimal, avg_datum, sum_datum, AggDiff, Extreme};
use weir_operators::repr::{Datum, Diff, OrdF64, Row, Tick};
use weir_operators::row_batch::{ArrangeRows, RowBuilder, RowSpine};

use super::collection::Coll;
use super::cut::{Cuts, ValCutTrace};
use crate::expr::{order_cmp, ScalarExpr};
use crate::plan::{AggFunc, Aggregate};

/// Arranges keyed rows by key: at a stateful cut when they are fresh
/// (see [`super::cut`]), else as any arrangement.
pub(super) fn arrange_rows<'s>(
    cuts: &mut Cuts,
    scope: Scope<'s, Tick>,
    rows: VecCollection<'s, Tick, (Row, Row), Diff>,
    fresh: bool,
    name: &str,
) -> Arranged<'s, ValCutTrace> {
    if fresh {
        cuts.keyed(scope, rows, name).0
    } else {
        rows.arrange_rows_named(&format!("Arrange: {name}"))
    }
}

/// A reduce over arranged keyed rows (as differential's `reduce_named`).
pub(super) fn reduce_rows<'s, L>(
    arranged: Arranged<'s, ValCutTrace>,
    name: &str,
    logic: L,
) -> VecCollection<'s, Tick, (Row, Row), Diff>
where
    L: FnMut(&[Datum], &[(&[Datum], Diff)], &mut Vec<(Row, Diff)>) + 'static,
{
    arranged
        .reduce_abelian::<_, RowBuilder, RowSpine, _, _>(name, logic, |vec, key, upds| {
            vec.clear();
            vec.extend(upds.drain(..).map(|(v, t, r)| ((key.to_vec(), v), t, r)));
        })
        .as_collection(|k: &[Datum], v: &[Datum]| (k.to_vec(), v.to_vec()))
}

/// Aggregates kept in the difference type (one entry per group, DESIGN.md
/// §4): counts, sums and averages; and min and max, whose running extreme
/// the difference holds too.
///
/// # Contract
/// A min or max among `aggs` only over append-only input (see
/// [`AggDiff`]): a retracted value cannot be taken back out of an extreme.
pub(super) fn reduce_accumulable<'s>(
    cuts: Option<&mut Cuts>,
    scope: Scope<'s, Tick>,
    keyed_rows: VecCollection<'s, Tick, (Row, Row), Diff>,
    aggs: Vec<Aggregate>,
) -> Coll<'s> {
    let summed: Vec<Aggregate> = aggs.iter().filter(|a| !a.is_extreme()).cloned().collect();
    let extremes: Vec<Aggregate> = aggs.iter().filter(|a| a.is_extreme()).cloned().collect();
    let exploded = keyed_rows.explode(move |(key, row)| {
        let accs = summed
            .iter()
            .map(|a| match a.func {
                AggFunc::CountRows => (0, Decimal::ZERO),
                _ => match a.expr.eval(&row) {
                    Ok(Datum::Null) | Err(_) => (0, Decimal::ZERO),
                    Ok(d) => (1, as_decimal(&d)),
                },
            })
            .collect();
        let extremes = extremes
            .iter()
            .map(|a| {
                // NULLs take no part, as in SQL; nor does a value that fails.
                let v = a.expr.eval(&row).unwrap_or(Datum::Null);
                if a.func == AggFunc::Min {
                    Extreme::Min(v)
                } else {
                    Extreme::Max(v)
                }
            })
            .collect();
        Some((
            key,
            AggDiff {
                rows: 1,
                accs,
                extremes,
            },
        ))
    });
    let arranged = match cuts {
        Some(cuts) => cuts.accumulated(scope, exploded, "CountTotal"),
        None => exploded.arrange_by_self_named("Arrange: CountTotal"),
    };
    arranged.count_total_core::<Diff>().flat_map(move |(key, state)| {
        // A group whose rows were all retracted has no output row.
        if state.rows <= 0 {
            return None;
        }
        let mut row = key;
        // The two lists hold the aggregates in `aggs`' order, split as
        // the updates were made above.
        let mut accs = state.accs.iter();
        let mut extremes = state.extremes.iter();
        for a in &aggs {
            if a.is_extreme() {
                row.push(extremes.next().map_or(Datum::Null, |e| e.value().clone()));
                continue;
            }
            let (n, sum) = accs.next().copied().unwrap_or_default();
            row.push(match a.func {
                AggFunc::CountRows => Datum::Int(state.rows),
                AggFunc::Count => Datum::Int(n),
                _ if n == 0 => Datum::Null,
                AggFunc::Sum => sum_datum(sum, a.input_type),
                AggFunc::Avg => avg_datum(sum, n, a.input_type),
                // Held in `extremes` (a DISTINCT one never reaches here).
                AggFunc::Min | AggFunc::Max => Datum::Null,
            });
        }
        Some(row)
    })
}

/// The value of an aggregate over no rows: 0 for counts, NULL otherwise.
pub(super) fn empty_value(a: &Aggregate) -> Datum {
    match a.func {
        AggFunc::CountRows | AggFunc::Count => Datum::Int(0),
        _ => Datum::Null,
    }
}

/// Aggregates that need the group's values (min, max, DISTINCT, float
/// sums): a reduce over the distinct argument values of each group.
pub(super) fn reduce_general<'s>(
    cuts: Option<&mut Cuts>,
    scope: Scope<'s, Tick>,
    keyed_rows: VecCollection<'s, Tick, (Row, Row), Diff>,
    aggs: Vec<Aggregate>,
) -> Coll<'s> {
    let arg_exprs: Vec<ScalarExpr> = aggs.iter().map(|a| a.expr.clone()).collect();
    // Only the arguments are kept, so the state is one entry per distinct
    // argument tuple of a group, not per event.
    let args = keyed_rows.map(move |(key, row)| {
        let vals: Row = arg_exprs.iter().map(|e| e.eval(&row).unwrap_or(Datum::Null)).collect();
        (key, vals)
    });
    let arranged = match cuts {
        Some(cuts) => arrange_rows(cuts, scope, args, true, "Reduce: aggregates"),
        None => args.arrange_rows_named("Arrange: Reduce: aggregates"),
    };
    reduce_rows(
        arranged,
        "Reduce: aggregates",
        move |_key, input: &[(&[Datum], Diff)], output: &mut Vec<(Row, Diff)>| {
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
