//! Finishing a one-view query over the peeked rows.

use weir_dataflows::expr::EvalError;
use weir_dataflows::plan::OrderKey;
use weir_dataflows::sql::PeekPlan;
use weir_operators::repr::{Diff, Row};

/// Applies a [`PeekPlan`] to the view's rows (with multiplicities):
/// filter, project, order and limit.
pub fn finish(plan: &PeekPlan, rows: Vec<(Row, Diff)>) -> Result<Vec<Row>, EvalError> {
    let mut out = Vec::new();
    for (row, n) in rows {
        if let Some(projected) = plan.plan.eval_linear(row)? {
            for _ in 0..n.max(0) {
                out.push(projected.clone());
            }
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
pub fn sort_rows(rows: &mut [Row], keys: &[OrderKey]) {
    rows.sort_by(|a, b| OrderKey::compare_rows(keys, a, b));
}
