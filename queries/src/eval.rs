//! Finishing a one-view query over the peeked rows.

use std::cmp::Ordering;

use weir_dataflows::expr::{order_cmp, EvalError};
use weir_dataflows::sql::PeekPlan;
use weir_operators::repr::{Datum, Diff, Row};

/// Applies a [`PeekPlan`] to the view's rows (with multiplicities):
/// filter, project, order and limit.
pub fn finish(plan: &PeekPlan, rows: Vec<(Row, Diff)>) -> Result<Vec<Row>, EvalError> {
    let mut out = Vec::new();
    'rows: for (row, n) in rows {
        for p in &plan.predicates {
            if !p.holds(&row)? {
                continue 'rows;
            }
        }
        let projected: Row = plan.outputs.iter().map(|e| e.eval(&row)).collect::<Result<_, _>>()?;
        for _ in 0..n.max(0) {
            out.push(projected.clone());
        }
    }
    sort_rows(&mut out, &plan.order_by);
    if let Some(l) = plan.limit {
        out.truncate(l);
    }
    Ok(out)
}

/// Sorts by the ORDER BY keys (NULLS LAST ascending, FIRST descending,
/// unless said otherwise), then by the whole row so answers are stable.
pub fn sort_rows(rows: &mut [Row], keys: &[weir_dataflows::plan::OrderKey]) {
    rows.sort_by(|a, b| {
        for k in keys {
            let (x, y) = (&a[k.column], &b[k.column]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => nulls(k.nulls_first),
                (false, true) => nulls(k.nulls_first).reverse(),
                _ if k.desc => order_cmp(x, y).reverse(),
                _ => order_cmp(x, y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        compare_rows(a, b)
    });
}

fn nulls(first: bool) -> Ordering {
    if first {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn compare_rows(a: &[Datum], b: &[Datum]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = order_cmp(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}
