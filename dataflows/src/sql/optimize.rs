//! Rewrites of planned relations that bound their state.

use weir_operators::repr::Datum;

use crate::expr::{CmpOp, ScalarExpr};
use crate::plan::RelPlan;

/// Rewrites that must happen for plans to have bounded state: a filter
/// `rn <= N` (or `< N`, `= 1`) over a ROW_NUMBER becomes the TopK's limit.
pub fn optimize(plan: RelPlan) -> RelPlan {
    match plan {
        RelPlan::Filter { input, predicates } => {
            let input = optimize(*input);
            push_limit(input, predicates)
        }
        RelPlan::Map { input, exprs } => RelPlan::Map {
            input: Box::new(optimize(*input)),
            exprs,
        },
        RelPlan::Project { input, outputs } => RelPlan::Project {
            input: Box::new(optimize(*input)),
            outputs,
        },
        RelPlan::Reduce {
            input,
            group_key,
            aggregates,
            monotonic,
        } => RelPlan::Reduce {
            input: Box::new(optimize(*input)),
            group_key,
            aggregates,
            monotonic,
        },
        RelPlan::Join {
            left,
            right,
            left_key,
            right_key,
            residual,
            kind,
            right_arity,
        } => RelPlan::Join {
            left: Box::new(optimize(*left)),
            right: Box::new(optimize(*right)),
            left_key,
            right_key,
            residual,
            kind,
            right_arity,
        },
        RelPlan::Distinct { input } => RelPlan::Distinct {
            input: Box::new(optimize(*input)),
        },
        RelPlan::UnionAll { inputs } => RelPlan::UnionAll {
            inputs: inputs.into_iter().map(optimize).collect(),
        },
        RelPlan::TopK {
            input,
            partition_by,
            order_by,
            limit,
            monotonic,
            input_arity,
        } => RelPlan::TopK {
            input: Box::new(optimize(*input)),
            partition_by,
            order_by,
            limit,
            monotonic,
            input_arity,
        },
        RelPlan::MatchRecognize(mut m) => {
            m.input = optimize(m.input);
            RelPlan::MatchRecognize(m)
        }
        other => other,
    }
}

/// Finds the TopK under `input` (through Projects) and, if a predicate
/// bounds its row number, sets the limit. A predicate that became the limit
/// is dropped: the TopK's rows then hold it always (their row numbers run
/// from 1 to at most the bound), and a filter would only cost a pass.
fn push_limit(mut input: RelPlan, predicates: Vec<ScalarExpr>) -> RelPlan {
    let mut kept = Vec::with_capacity(predicates.len());
    for p in predicates {
        let bound = match &p {
            ScalarExpr::Cmp(op, a, b) => match (&**a, &**b, op) {
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(n)), CmpOp::LtEq) => Some((*c, *n)),
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(n)), CmpOp::Lt) => Some((*c, *n - 1)),
                (ScalarExpr::Column(c), ScalarExpr::Literal(Datum::Int(1)), CmpOp::Eq) => Some((*c, 1)),
                (ScalarExpr::Literal(Datum::Int(n)), ScalarExpr::Column(c), CmpOp::GtEq) => Some((*c, *n)),
                (ScalarExpr::Literal(Datum::Int(n)), ScalarExpr::Column(c), CmpOp::Gt) => Some((*c, *n - 1)),
                _ => None,
            },
            _ => None,
        };
        match bound {
            Some((col, n)) if n >= 0 && set_topk_limit(&mut input, col, n as usize) => {}
            _ => kept.push(p),
        }
    }
    if kept.is_empty() {
        return input;
    }
    RelPlan::Filter {
        input: Box::new(input),
        predicates: kept,
    }
}

/// Whether `col` of `plan` is a TopK's row number, whose limit is now at
/// most `bound`.
fn set_topk_limit(plan: &mut RelPlan, col: usize, bound: usize) -> bool {
    match plan {
        RelPlan::Project { input, outputs } => match outputs.get(col) {
            Some(&c) => set_topk_limit(input, c, bound),
            None => false,
        },
        RelPlan::Map { input, .. } => set_topk_limit(input, col, bound),
        RelPlan::TopK { limit, input_arity, .. } if col == *input_arity => {
            *limit = Some(limit.map_or(bound, |l| l.min(bound)));
            true
        }
        _ => false,
    }
}
