//! Column pruning: every table or view a plan reads is narrowed, right where
//! it is read, to the columns the plan uses, so that no operator above
//! copies, keeps or arranges a column nothing reads (a top-1 per order keeps
//! four of the order's seven columns, not all seven).
//!
//! # Contract
//! [`prune_columns`] leaves the plan's output as it was: the same columns in
//! the same order, the same rows, the same errors. Every expression is still
//! evaluated (an unused column's failing expression still sends its row to
//! the dead letters); only columns are dropped. One thing may differ: rows
//! that tie on a `ROW_NUMBER`'s `ORDER BY` are numbered by the columns the
//! query reads, in their order, where before all the input's columns took
//! part. Both are orders SQL allows for ties.

use std::collections::{BTreeMap, BTreeSet};

use crate::expr::ScalarExpr;
use crate::plan::{MatchRecognize, Nav, RelPlan};

/// The arity of a catalog object by name (`None` when unknown).
pub type ArityOf<'a> = dyn Fn(&str) -> Option<usize> + 'a;

/// Narrows each read of a table or view to the columns `plan` uses (see the
/// module's contract). A plan whose arity cannot be told (an empty
/// constant, an unknown object) comes back as it was.
pub fn prune_columns(plan: RelPlan, arity_of: &ArityOf<'_>) -> RelPlan {
    let Some(n) = arity(&plan, arity_of) else {
        return plan;
    };
    let all: BTreeSet<usize> = (0..n).collect();
    let original = plan.clone();
    match prune(plan, &all, arity_of) {
        Some(p) => exactly(p, &all),
        None => original,
    }
}

/// A pruned plan: its columns, and where each demanded column of the
/// original plan went. The output may hold more columns than demanded.
struct Pruned {
    plan: RelPlan,
    map: BTreeMap<usize, usize>,
    arity: usize,
}

impl Pruned {
    fn at(&self, c: usize) -> usize {
        self.map[&c]
    }
}

/// The output arity of `plan`, per [`RelPlan`]'s documentation of each node.
fn arity(plan: &RelPlan, arity_of: &ArityOf<'_>) -> Option<usize> {
    Some(match plan {
        RelPlan::Get { name } => arity_of(name)?,
        RelPlan::Constant { rows } => rows.first()?.len(),
        RelPlan::Map { input, exprs } => arity(input, arity_of)? + exprs.len(),
        RelPlan::Filter { input, .. } | RelPlan::Distinct { input } => arity(input, arity_of)?,
        RelPlan::Project { outputs, .. } => outputs.len(),
        RelPlan::Reduce {
            group_key, aggregates, ..
        } => group_key.len() + aggregates.len(),
        RelPlan::Join { left, right_arity, .. } => arity(left, arity_of)? + right_arity,
        RelPlan::UnionAll { inputs } => arity(inputs.first()?, arity_of)?,
        RelPlan::TopK { input_arity, .. } => input_arity + 1,
        RelPlan::MatchRecognize(m) => match_arity(m),
    })
}

fn match_arity(m: &MatchRecognize) -> usize {
    if m.all_rows {
        m.input_arity + m.measures.len()
    } else {
        m.partition_by.len() + m.measures.len()
    }
}

fn columns_of<'e>(exprs: impl IntoIterator<Item = &'e ScalarExpr>, out: &mut BTreeSet<usize>) {
    let mut cols = Vec::new();
    for e in exprs {
        e.columns(&mut cols);
    }
    out.extend(cols);
}

fn remap(exprs: &mut [ScalarExpr], p: &Pruned) {
    for e in exprs {
        e.permute(&|c| p.at(c));
    }
}

/// The last input column a pattern reads: in its key, its order, its
/// conditions and measures (columns from `input_arity` on are navigations)
/// or what its navigations evaluate.
fn last_read(m: &MatchRecognize) -> usize {
    let n = m.input_arity;
    let mut read: BTreeSet<usize> = m.partition_by.iter().copied().collect();
    read.insert(m.order_by);
    columns_of(m.defines.iter().flatten().chain(&m.measures), &mut read);
    for nav in &m.navs {
        if let Nav::Row { expr, .. } | Nav::Agg { expr: Some(expr), .. } = nav {
            columns_of([expr], &mut read);
        }
    }
    read.range(..n).next_back().copied().unwrap_or(m.order_by)
}

fn identity(demand: &BTreeSet<usize>) -> BTreeMap<usize, usize> {
    demand.iter().map(|&c| (c, c)).collect()
}

/// Each demanded column to its position among them: the map of a plan that
/// outputs exactly the demanded columns, in order.
fn ranks(demand: &BTreeSet<usize>) -> BTreeMap<usize, usize> {
    demand.iter().enumerate().map(|(i, &c)| (c, i)).collect()
}

/// `plan` (of `arity` columns) projected to `outputs`; itself when that
/// keeps every column in place.
fn project(plan: RelPlan, arity: usize, outputs: Vec<usize>) -> RelPlan {
    if outputs.len() == arity && outputs.iter().enumerate().all(|(i, &o)| i == o) {
        plan
    } else {
        RelPlan::Project {
            input: Box::new(plan),
            outputs,
        }
    }
}

/// `p` with exactly the columns of `demand`, in order.
fn exactly(p: Pruned, demand: &BTreeSet<usize>) -> RelPlan {
    let outputs: Vec<usize> = demand.iter().map(|&c| p.at(c)).collect();
    project(p.plan, p.arity, outputs)
}

/// `plan` computing at least the columns of `demand` (indexes of its
/// output); `None` when an arity on the way cannot be told.
fn prune(plan: RelPlan, demand: &BTreeSet<usize>, arity_of: &ArityOf<'_>) -> Option<Pruned> {
    Some(match plan {
        RelPlan::Get { name } => {
            let n = arity_of(&name)?;
            // `demand` holds columns of the object: all of them when as many.
            Pruned {
                plan: project(RelPlan::Get { name }, n, demand.iter().copied().collect()),
                map: ranks(demand),
                arity: demand.len(),
            }
        }
        RelPlan::Constant { rows } => {
            let n = rows.first()?.len();
            Pruned {
                plan: RelPlan::Constant { rows },
                map: identity(demand),
                arity: n,
            }
        }
        RelPlan::Map { input, mut exprs } => {
            let n = arity(&input, arity_of)?;
            let mut inner: BTreeSet<usize> = demand.iter().copied().filter(|&c| c < n).collect();
            columns_of(&exprs, &mut inner);
            let input = prune(*input, &inner, arity_of)?;
            remap(&mut exprs, &input);
            let map = demand
                .iter()
                .map(|&c| (c, if c < n { input.at(c) } else { input.arity + (c - n) }))
                .collect();
            let arity = input.arity + exprs.len();
            Pruned {
                plan: RelPlan::Map {
                    input: Box::new(input.plan),
                    exprs,
                },
                map,
                arity,
            }
        }
        RelPlan::Filter { input, mut predicates } => {
            let mut inner = demand.clone();
            columns_of(&predicates, &mut inner);
            let input = prune(*input, &inner, arity_of)?;
            remap(&mut predicates, &input);
            Pruned {
                map: demand.iter().map(|&c| (c, input.at(c))).collect(),
                arity: input.arity,
                plan: RelPlan::Filter {
                    input: Box::new(input.plan),
                    predicates,
                },
            }
        }
        RelPlan::Project { input, outputs } => {
            let inner: BTreeSet<usize> = demand.iter().map(|&c| outputs[c]).collect();
            let input = prune(*input, &inner, arity_of)?;
            let kept: Vec<usize> = demand.iter().map(|&c| input.at(outputs[c])).collect();
            Pruned {
                plan: project(input.plan, input.arity, kept),
                map: ranks(demand),
                arity: demand.len(),
            }
        }
        RelPlan::Reduce {
            input,
            mut group_key,
            mut aggregates,
            monotonic,
        } => {
            let mut inner = BTreeSet::new();
            columns_of(&group_key, &mut inner);
            columns_of(aggregates.iter().map(|a| &a.expr), &mut inner);
            let input = prune(*input, &inner, arity_of)?;
            remap(&mut group_key, &input);
            for a in &mut aggregates {
                a.expr.permute(&|c| input.at(c));
            }
            Pruned {
                map: identity(demand),
                arity: group_key.len() + aggregates.len(),
                plan: RelPlan::Reduce {
                    input: Box::new(input.plan),
                    group_key,
                    aggregates,
                    monotonic,
                },
            }
        }
        RelPlan::Join {
            left,
            right,
            mut left_key,
            mut right_key,
            mut residual,
            kind,
            right_arity,
        } => {
            let nl = arity(&left, arity_of)?;
            let mut used = demand.clone();
            columns_of(&residual, &mut used);
            let mut on_left: BTreeSet<usize> = used.iter().copied().filter(|&c| c < nl).collect();
            columns_of(&left_key, &mut on_left);
            let mut on_right: BTreeSet<usize> = used.iter().filter(|&&c| c >= nl).map(|&c| c - nl).collect();
            columns_of(&right_key, &mut on_right);
            let left = prune(*left, &on_left, arity_of)?;
            let right = prune(*right, &on_right, arity_of)?;
            remap(&mut left_key, &left);
            remap(&mut right_key, &right);
            let joined = |c: usize| {
                if c < nl {
                    left.at(c)
                } else {
                    left.arity + right.at(c - nl)
                }
            };
            for e in &mut residual {
                e.permute(&joined);
            }
            debug_assert!(right_arity >= right.arity);
            Pruned {
                map: demand.iter().map(|&c| (c, joined(c))).collect(),
                arity: left.arity + right.arity,
                plan: RelPlan::Join {
                    right_arity: right.arity,
                    left: Box::new(left.plan),
                    right: Box::new(right.plan),
                    left_key,
                    right_key,
                    residual,
                    kind,
                },
            }
        }
        RelPlan::Distinct { input } => {
            // Every column decides which rows are distinct.
            let all: BTreeSet<usize> = (0..arity(&input, arity_of)?).collect();
            let input = prune(*input, &all, arity_of)?;
            Pruned {
                map: identity(demand),
                arity: all.len(),
                plan: RelPlan::Distinct {
                    input: Box::new(exactly(input, &all)),
                },
            }
        }
        RelPlan::UnionAll { inputs } => {
            // Projection distributes over a multiset union: each input
            // computes the demanded columns, in one order for all.
            let inputs = inputs
                .into_iter()
                .map(|i| prune(i, demand, arity_of).map(|p| exactly(p, demand)))
                .collect::<Option<Vec<_>>>()?;
            Pruned {
                plan: RelPlan::UnionAll { inputs },
                map: ranks(demand),
                arity: demand.len(),
            }
        }
        RelPlan::TopK {
            input,
            mut partition_by,
            mut order_by,
            limit,
            monotonic,
            input_arity,
        } => {
            let mut inner: BTreeSet<usize> = demand.iter().copied().filter(|&c| c < input_arity).collect();
            inner.extend(partition_by.iter().copied());
            inner.extend(order_by.iter().map(|k| k.column));
            let input = prune(*input, &inner, arity_of)?;
            for c in &mut partition_by {
                *c = input.at(*c);
            }
            for k in &mut order_by {
                k.column = input.at(k.column);
            }
            let map = demand
                .iter()
                .map(|&c| (c, if c < input_arity { input.at(c) } else { input.arity }))
                .collect();
            Pruned {
                map,
                arity: input.arity + 1,
                plan: RelPlan::TopK {
                    input: Box::new(input.plan),
                    partition_by,
                    order_by,
                    limit,
                    monotonic,
                    input_arity: input.arity,
                },
            }
        }
        RelPlan::MatchRecognize(mut m) => {
            // The output's columns are the partition key and the measures
            // (or, for `ALL ROWS PER MATCH`, every input column and the
            // measures): none of them can be dropped, and none moves. Rows
            // that tie on the event time are ordered by their other columns
            // in column order (docs/cep.md), and that order decides
            // matches, so the input keeps a prefix: the columns up to the
            // last one the rule reads (rows tied on all of those are alike
            // to the rule). Kept columns keep their places.
            let n = m.input_arity;
            let kept = if m.all_rows { n } else { last_read(&m) + 1 };
            let used: BTreeSet<usize> = (0..kept).collect();
            let input = std::mem::replace(&mut m.input, RelPlan::Constant { rows: Vec::new() });
            m.input = exactly(prune(input, &used, arity_of)?, &used);
            // Conditions and measures see a navigation `i` as column
            // `n + i`; it follows the narrowed row, at `kept + i`.
            if kept < n {
                let moved = |c: usize| if c < n { c } else { kept + (c - n) };
                for e in m.defines.iter_mut().flatten().chain(&mut m.measures) {
                    e.permute(&moved);
                }
            }
            m.input_arity = kept;
            Pruned {
                arity: match_arity(&m),
                plan: RelPlan::MatchRecognize(m),
                map: identity(demand),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::prune_columns;
    use crate::plan::JobPlan;
    use crate::sql::lookup::EmptyCatalog;
    use crate::sql::plan_job;

    fn shop() -> JobPlan {
        let sql = [
            include_str!("../../../examples/shop/01_sources.sql"),
            include_str!("../../../examples/shop/02_orders.sql"),
            include_str!("../../../examples/shop/03_payments.sql"),
            include_str!("../../../examples/shop/05_rules.sql"),
        ]
        .concat();
        plan_job(&sql, &EmptyCatalog).expect("the shop plans")
    }

    fn view_reads(job: &JobPlan, view: &str) -> Vec<(String, Option<Vec<usize>>)> {
        let v = job.views.iter().find(|v| v.name == view).expect("the view");
        v.plan
            .reads()
            .into_iter()
            .map(|(name, cols)| (name.to_string(), cols.map(<[usize]>::to_vec)))
            .collect()
    }

    #[test]
    fn shop_reads_only_the_columns_it_uses() {
        let job = shop();
        // orders: type 0, order_id 1, customer_id 2, product 3, quantity 4,
        // price 5, ts 6.
        assert_eq!(
            view_reads(&job, "order_status"),
            [("orders".into(), Some(vec![0, 1, 2, 6]))]
        );
        assert_eq!(
            view_reads(&job, "orders_per_customer"),
            [
                ("orders".into(), Some(vec![0, 2, 4, 5])),
                // customers: customer_id, name, tier, ts.
                ("customers".into(), Some(vec![0, 1, 2])),
            ]
        );
        // payments: type 0, payment_id 1, order_id 2, customer_id 3,
        // amount 4, method 5, ts 6.
        assert_eq!(
            view_reads(&job, "payments_by_method"),
            [("payments".into(), Some(vec![0, 4, 5]))]
        );
        // A pattern keeps the columns up to the last one it reads: the
        // shop's read their event time, the last column.
        assert_eq!(view_reads(&job, "fraud_suspects"), [("payments".into(), None)]);
    }

    /// Columns after the last one a pattern reads are dropped; one before
    /// it stays, even unread, for the order of rows that tie on time.
    #[test]
    fn a_pattern_drops_only_columns_after_the_last_it_reads() {
        let sql = "CREATE TABLE ev (p BIGINT, tag TEXT, ts TIMESTAMP, v BIGINT, note TEXT) \
                   WITH (connector = 'log', topic = 'ev', format = 'json');
                   CREATE MATERIALIZED VIEW m AS SELECT * FROM ev MATCH_RECOGNIZE (
                     PARTITION BY p ORDER BY ts MEASURES max(A.v) AS top
                     PATTERN (A+) DEFINE A AS A.v > 1);";
        let job = plan_job(sql, &EmptyCatalog).expect("the rule plans");
        assert_eq!(view_reads(&job, "m"), [("ev".into(), Some(vec![0, 1, 2, 3]))]);
    }

    /// A pruned plan computes only what it uses: pruning it again finds
    /// nothing to drop and no projection to add.
    #[test]
    fn pruning_is_idempotent() {
        let job = shop();
        let arity = |n: &str| {
            let table = job.tables.iter().find(|t| t.name == n).map(|t| t.schema.columns.len());
            table.or_else(|| job.views.iter().find(|v| v.name == n).map(|v| v.schema.columns.len()))
        };
        for v in &job.views {
            assert_eq!(prune_columns(v.plan.clone(), &arity), v.plan, "{}", v.name);
        }
    }
}
