//! Planning queries: set operations, `ORDER BY … LIMIT`, `FROM` and joins,
//! into [`RelPlan`]s. A `SELECT` block is planned in `select.rs`,
//! `MATCH_RECOGNIZE` in `pattern.rs` (both extend [`QueryPlanner`]).

use std::collections::BTreeSet;

use sqlparser::ast::{
    self, Expr, JoinConstraint, JoinOperator, SetExpr, SetOperator, SetQuantifier, TableFactor, Value,
};

use super::bind::bind;
use super::error::{loc_of, unsupported, Loc, PlanError, Result};
use super::extensions::Extensions;
use super::scope::{ident_name, object_name, resolve, JobScope, ScopeColumn};
use super::typeconv::{coerce, expect_bool, unify};
use crate::expr::{CmpOp, ScalarExpr};
use crate::plan::{JoinKind, OrderKey, RelPlan};

/// A planned relation with its columns.
#[derive(Clone, Debug)]
pub(super) struct Rel {
    pub(super) plan: RelPlan,
    pub(super) columns: Vec<ScopeColumn>,
    pub(super) monotonic: bool,
}

pub(super) struct QueryPlanner<'a> {
    pub(super) scope: &'a JobScope<'a>,
    pub(super) depends_on: BTreeSet<String>,
    /// `WITHIN` clauses and `PATTERN` positions of the statement's text.
    pub(super) ext: &'a Extensions,
}

impl QueryPlanner<'_> {
    pub(super) fn plan_query(&mut self, q: &ast::Query, outer_alias: Option<&str>) -> Result<Rel> {
        if q.with.is_some() {
            return Err(unsupported("WITH (common table expressions)", loc_of(q)));
        }
        if q.fetch.is_some() || !q.locks.is_empty() {
            return Err(unsupported("FETCH / FOR UPDATE", loc_of(q)));
        }
        let mut rel = self.plan_set_expr(&q.body)?;
        let limit = match &q.limit_clause {
            None => None,
            Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
                if offset.is_some() {
                    return Err(unsupported("OFFSET in a view", loc_of(q)));
                }
                match limit {
                    None => None,
                    Some(e) => Some(self.const_usize(e)?),
                }
            }
            Some(other) => return Err(unsupported(format!("{other}"), loc_of(q))),
        };
        if let Some(limit) = limit {
            // ORDER BY … LIMIT n in a view: a global top-n.
            let mut order = Vec::new();
            if let Some(ob) = &q.order_by {
                order = self.order_keys(ob, &rel.columns)?;
            }
            let arity = rel.columns.len();
            rel.plan = RelPlan::Project {
                input: Box::new(RelPlan::TopK {
                    input: Box::new(rel.plan),
                    partition_by: vec![],
                    order_by: order,
                    limit: Some(limit),
                    monotonic: rel.monotonic,
                    input_arity: arity,
                }),
                outputs: (0..arity).collect(),
            };
            rel.monotonic = false;
        }
        // ORDER BY without LIMIT does not change a view's contents: views are
        // sets; readers order at query time.
        if let Some(alias) = outer_alias {
            for c in &mut rel.columns {
                c.qualifier = Some(alias.to_string());
            }
        }
        Ok(rel)
    }

    pub(super) fn const_usize(&self, e: &Expr) -> Result<usize> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse()
                    .map_err(|_| PlanError::new("type_error", format!("{n} is not a row count"), loc_of(e))),
                _ => Err(PlanError::new("type_error", "LIMIT takes a number", loc_of(e))),
            },
            _ => Err(PlanError::new("type_error", "LIMIT takes a constant number", loc_of(e))),
        }
    }

    pub(super) fn order_keys(&mut self, ob: &ast::OrderBy, columns: &[ScopeColumn]) -> Result<Vec<OrderKey>> {
        let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
            return Err(unsupported("ORDER BY ALL", loc_of(ob)));
        };
        let mut keys = Vec::new();
        for o in exprs {
            let column = match &o.expr {
                Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                    let n = self.const_usize(&o.expr)?;
                    if n == 0 || n > columns.len() {
                        return Err(PlanError::new(
                            "unknown_column",
                            format!("ORDER BY position {n} is not in the select list"),
                            loc_of(&o.expr),
                        ));
                    }
                    n - 1
                }
                other => {
                    let t = bind(other, columns, None)?;
                    match t.expr {
                        ScalarExpr::Column(i) => i,
                        _ => {
                            return Err(unsupported(
                                "ORDER BY an expression (order by an output column)",
                                loc_of(other),
                            ))
                        }
                    }
                }
            };
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            keys.push(OrderKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        Ok(keys)
    }

    pub(super) fn plan_set_expr(&mut self, body: &SetExpr) -> Result<Rel> {
        match body {
            SetExpr::Select(s) => self.plan_select(s),
            SetExpr::Query(q) => self.plan_query(q, None),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                if *op != SetOperator::Union {
                    return Err(unsupported(format!("{op}"), loc_of(body)));
                }
                let l = self.plan_set_expr(left)?;
                let r = self.plan_set_expr(right)?;
                if l.columns.len() != r.columns.len() {
                    return Err(PlanError::new(
                        "type_error",
                        format!(
                            "each UNION query must have the same number of columns ({} vs {})",
                            l.columns.len(),
                            r.columns.len()
                        ),
                        loc_of(&**right),
                    ));
                }
                let mut columns = l.columns.clone();
                let mut lcast = Vec::new();
                let mut rcast = Vec::new();
                for (i, (c, rc)) in columns.iter_mut().zip(&r.columns).enumerate() {
                    let ty = unify(c.ty, rc.ty).ok_or_else(|| {
                        PlanError::new(
                            "type_error",
                            format!("UNION types {} and {} cannot be matched", c.ty, rc.ty),
                            loc_of(&**right),
                        )
                    })?;
                    lcast.push(coerce(ScalarExpr::Column(i), c.ty, ty));
                    rcast.push(coerce(ScalarExpr::Column(i), rc.ty, ty));
                    c.ty = ty;
                    c.nullable |= rc.nullable;
                    c.qualifier = None;
                }
                let arity = columns.len();
                let project = |plan: RelPlan, exprs: Vec<ScalarExpr>| RelPlan::Project {
                    input: Box::new(RelPlan::Map {
                        input: Box::new(plan),
                        exprs,
                    }),
                    outputs: (arity..2 * arity).collect(),
                };
                let all = RelPlan::UnionAll {
                    inputs: vec![project(l.plan, lcast), project(r.plan, rcast)],
                };
                let distinct = !matches!(set_quantifier, SetQuantifier::All);
                Ok(Rel {
                    plan: if distinct {
                        RelPlan::Distinct { input: Box::new(all) }
                    } else {
                        all
                    },
                    columns,
                    monotonic: l.monotonic && r.monotonic && !distinct,
                })
            }
            other => Err(unsupported(
                other.to_string().split_whitespace().next().unwrap_or("this query"),
                loc_of(other),
            )),
        }
    }

    pub(super) fn plan_from(&mut self, from: &[ast::TableWithJoins]) -> Result<Rel> {
        let mut acc: Option<Rel> = None;
        for twj in from {
            let mut rel = self.plan_factor(&twj.relation)?;
            for j in &twj.joins {
                let right = self.plan_factor(&j.relation)?;
                let (kind, constraint) = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, Some(c)),
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, Some(c)),
                    JoinOperator::CrossJoin(_) => (JoinKind::Inner, None),
                    other => {
                        // "FullOuter(..)" → "FULL OUTER JOIN".
                        let text = format!("{other:?}");
                        let variant = text.split('(').next().unwrap_or("this");
                        let mut name = String::new();
                        for c in variant.chars() {
                            if c.is_uppercase() && !name.is_empty() {
                                name.push(' ');
                            }
                            name.push(c.to_ascii_uppercase());
                        }
                        return Err(unsupported(format!("{name} JOIN"), loc_of(&j.relation)));
                    }
                };
                rel = self.plan_join(rel, right, kind, constraint, loc_of(&j.relation))?;
            }
            acc = Some(match acc {
                None => rel,
                Some(left) => self.plan_join(left, rel, JoinKind::Inner, None, loc_of(&twj.relation))?,
            });
        }
        Ok(acc.unwrap_or_else(|| Rel {
            plan: RelPlan::Constant { rows: vec![vec![]] },
            columns: vec![],
            monotonic: true,
        }))
    }

    pub(super) fn plan_factor(&mut self, f: &TableFactor) -> Result<Rel> {
        match f {
            TableFactor::Table { name, alias, args, .. } => {
                if args.is_some() {
                    return Err(unsupported("table functions", loc_of(name)));
                }
                let n = object_name(name)?;
                let info = self.scope.lookup(&n).ok_or_else(|| {
                    PlanError::new("unknown_table", format!("unknown table or view \"{n}\""), loc_of(name))
                })?;
                self.depends_on.insert(n.clone());
                let qualifier = match alias {
                    Some(a) => {
                        if !a.columns.is_empty() {
                            return Err(unsupported("column aliases on a table", loc_of(name)));
                        }
                        ident_name(&a.name)
                    }
                    None => n.clone(),
                };
                Ok(Rel {
                    plan: RelPlan::Get { name: n },
                    columns: info
                        .schema
                        .columns
                        .iter()
                        .map(|c| ScopeColumn {
                            qualifier: Some(qualifier.clone()),
                            name: c.name.clone(),
                            ty: c.ty,
                            nullable: c.nullable,
                        })
                        .collect(),
                    monotonic: info.monotonic,
                })
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return Err(unsupported("LATERAL", loc_of(&**subquery)));
                }
                let alias = alias.as_ref().map(|a| ident_name(&a.name));
                self.plan_query(subquery, alias.as_deref())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(unsupported("an alias on a parenthesized join", loc_of(f)));
                }
                self.plan_from(std::slice::from_ref(table_with_joins))
            }
            TableFactor::MatchRecognize { .. } => self.plan_match_recognize(f),
            other => Err(unsupported(format!("FROM {other}"), loc_of(other))),
        }
    }

    fn plan_join(
        &mut self,
        left: Rel,
        right: Rel,
        kind: JoinKind,
        constraint: Option<&JoinConstraint>,
        at: Loc,
    ) -> Result<Rel> {
        let nl = left.columns.len();
        let mut columns = left.columns.clone();
        columns.extend(right.columns.iter().cloned().map(|mut c| {
            if kind == JoinKind::Left {
                c.nullable = true;
            }
            c
        }));
        let mut conjuncts = Vec::new();
        match constraint {
            None | Some(JoinConstraint::None) => {}
            Some(JoinConstraint::On(e)) => {
                let t = bind(e, &columns, None)?;
                expect_bool(&t, e)?;
                split_conjuncts(t.expr, &mut conjuncts);
            }
            Some(JoinConstraint::Using(names)) => {
                for n in names {
                    let name = object_name(n)?;
                    let li = resolve(&left.columns, None, &name, loc_of(n))?;
                    let ri = resolve(&right.columns, None, &name, loc_of(n))?;
                    conjuncts.push(ScalarExpr::Cmp(
                        CmpOp::Eq,
                        Box::new(ScalarExpr::Column(li)),
                        Box::new(ScalarExpr::Column(nl + ri)),
                    ));
                }
            }
            Some(other) => return Err(unsupported(format!("join constraint {other:?}"), at)),
        }
        let mut left_key = Vec::new();
        let mut right_key = Vec::new();
        let mut residual = Vec::new();
        for c in conjuncts {
            if let ScalarExpr::Cmp(CmpOp::Eq, a, b) = &c {
                let side = |e: &ScalarExpr| {
                    let mut cols = Vec::new();
                    e.columns(&mut cols);
                    if cols.is_empty() {
                        None
                    } else if cols.iter().all(|&i| i < nl) {
                        Some(true)
                    } else if cols.iter().all(|&i| i >= nl) {
                        Some(false)
                    } else {
                        None
                    }
                };
                match (side(a), side(b)) {
                    (Some(true), Some(false)) => {
                        let mut r = (**b).clone();
                        r.permute(&|i| i - nl);
                        left_key.push((**a).clone());
                        right_key.push(r);
                        continue;
                    }
                    (Some(false), Some(true)) => {
                        let mut r = (**a).clone();
                        r.permute(&|i| i - nl);
                        left_key.push((**b).clone());
                        right_key.push(r);
                        continue;
                    }
                    _ => {}
                }
            }
            residual.push(c);
        }
        Ok(Rel {
            plan: RelPlan::Join {
                left: Box::new(left.plan),
                right: Box::new(right.plan),
                left_key,
                right_key,
                residual,
                kind,
                right_arity: right.columns.len(),
            },
            columns,
            monotonic: left.monotonic && right.monotonic && kind == JoinKind::Inner,
        })
    }
}

pub(super) fn split_conjuncts(e: ScalarExpr, out: &mut Vec<ScalarExpr>) {
    match e {
        ScalarExpr::And(es) => es.into_iter().for_each(|e| split_conjuncts(e, out)),
        e => out.push(e),
    }
}
