//! Planning a read of one view (`POST /v1/query`): the planner of views,
//! restricted to filters and projections of one view.

use std::collections::BTreeSet;

use sqlparser::ast::{self, Statement};
use weir_operators::repr::Column;

use super::error::{loc_of, Loc, PlanError, Result};
use super::extensions;
use super::lookup::CatalogLookup;
use super::parse::parse;
use super::query::QueryPlanner;
use super::scope::{JobScope, ScopeColumn};
use crate::plan::{JobPlan, OrderKey, RelPlan};

/// A read of one view: what `POST /v1/query` accepts. Evaluated by the
/// query side over rows peeked from the view's arrangement.
#[derive(Clone, Debug, PartialEq)]
pub struct PeekPlan {
    pub view: String,
    /// Filters, maps and projections over the view's rows only (see
    /// [`RelPlan::eval_linear`]).
    pub plan: RelPlan,
    pub columns: Vec<Column>,
    /// Over the output row.
    pub order_by: Vec<OrderKey>,
    pub limit: Option<usize>,
}

/// The first node, from the top, that makes `plan` more than filters and
/// projections of one object, in the user's terms.
fn nonlinear_construct(plan: &RelPlan) -> &'static str {
    match plan {
        RelPlan::Map { input, .. } | RelPlan::Filter { input, .. } | RelPlan::Project { input, .. } => {
            nonlinear_construct(input)
        }
        RelPlan::Get { .. } => "this query",
        RelPlan::Constant { .. } => "a SELECT without FROM",
        RelPlan::Reduce { .. } => "grouping (GROUP BY or an aggregate)",
        RelPlan::Join { .. } => "a join",
        RelPlan::Distinct { .. } => "DISTINCT",
        RelPlan::UnionAll { .. } => "UNION",
        RelPlan::TopK { .. } => "a window function",
        RelPlan::MatchRecognize(_) => "MATCH_RECOGNIZE",
    }
}

/// Plans `SELECT … FROM view [WHERE …] [ORDER BY …] [LIMIT n]` with the
/// planner of views; a plan that is more than filters and projections of
/// one view (joins, grouping, DISTINCT, UNION, window functions) is refused
/// with a clear error: such a query belongs in a materialized view.
pub fn plan_peek(sql: &str, catalog: &dyn CatalogLookup) -> Result<PeekPlan> {
    let statements = parse(sql)?;
    let [Statement::Query(q)] = statements.as_slice() else {
        let at = statements
            .get(1)
            .or(statements.first())
            .map(loc_of)
            .unwrap_or(Loc(1, 1));
        return Err(PlanError::new(
            "unsupported",
            "a query is exactly one SELECT statement",
            at,
        ));
    };
    let not_here = |what: &str, at: Loc| {
        PlanError::new(
            "unsupported",
            format!("{what} is not supported in a query: a query reads one view with WHERE, ORDER BY and LIMIT; create a view for the rest"),
            at,
        )
    };
    if q.with.is_some() {
        return Err(not_here("WITH", loc_of(&**q)));
    }
    let job = JobPlan::default();
    let scope = JobScope { catalog, job: &job };
    let ext = extensions::Extensions::default();
    let mut planner = QueryPlanner {
        scope: &scope,
        depends_on: BTreeSet::new(),
        ext: &ext,
    };
    let rel = planner.plan_set_expr(&q.body)?;
    let Some(view) = rel.plan.linear_source().map(str::to_string) else {
        return Err(not_here(nonlinear_construct(&rel.plan), loc_of(&*q.body)));
    };
    let order_by = match &q.order_by {
        Some(ob) => planner.order_keys(ob, &rel.columns)?,
        None => vec![],
    };
    let limit = match &q.limit_clause {
        None => None,
        Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
            if offset.is_some() {
                return Err(not_here("OFFSET", loc_of(&**q)));
            }
            match limit {
                Some(e) => Some(planner.const_usize(e)?),
                None => None,
            }
        }
        Some(_) => return Err(not_here("this LIMIT form", loc_of(&**q))),
    };
    Ok(PeekPlan {
        view,
        plan: rel.plan,
        columns: rel.columns.iter().map(ScopeColumn::column).collect(),
        order_by,
        limit,
    })
}
