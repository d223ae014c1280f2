//! Planning one `SELECT` block: `WHERE`, the select list, `GROUP BY` and
//! `HAVING` into a Reduce, `ROW_NUMBER() OVER` into a TopK, `DISTINCT`.

use sqlparser::ast::{self, Expr, GroupByExpr, SelectItem, Value};
use weir_operators::repr::SqlType;

use super::aggregate::contains_aggregate;
use super::bind::{bind, GroupContext};
use super::error::{loc_of, unsupported, PlanError, Result};
use super::query::{split_conjuncts, QueryPlanner, Rel};
use super::scope::{ident_name, object_name, ScopeColumn};
use super::typeconv::{expect_bool, Typed};
use crate::expr::ScalarExpr;
use crate::plan::{OrderKey, RelPlan};

impl QueryPlanner<'_> {
    pub(super) fn plan_select(&mut self, s: &ast::Select) -> Result<Rel> {
        let at = loc_of(s);
        if s.top.is_some() || s.into.is_some() || !s.lateral_views.is_empty() || s.qualify.is_some() {
            return Err(unsupported("TOP / INTO / LATERAL VIEW / QUALIFY", at));
        }
        if !s.named_window.is_empty() {
            return Err(unsupported("WINDOW clauses", at));
        }
        let mut rel = self.plan_from(&s.from)?;
        if let Some(w) = &s.selection {
            if contains_aggregate(w) {
                return Err(PlanError::new(
                    "aggregate_error",
                    "aggregate functions are not allowed in WHERE",
                    loc_of(w),
                ));
            }
            let t = bind(w, &rel.columns, None)?;
            expect_bool(&t, w)?;
            let mut preds = Vec::new();
            split_conjuncts(t.expr, &mut preds);
            rel.plan = RelPlan::Filter {
                input: Box::new(rel.plan),
                predicates: preds,
            };
        }

        // Expand the select list (wildcards) into (expr, name) pairs.
        let mut items: Vec<(Expr, String)> = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => items.push((e.clone(), default_name(e))),
                SelectItem::ExprWithAlias { expr, alias } => items.push((expr.clone(), ident_name(alias))),
                SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("multiple aliases for one select item", at))
                }
                SelectItem::Wildcard(_) => {
                    for c in &rel.columns {
                        items.push((column_expr(c), c.name.clone()));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?,
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(unsupported(format!("{e}.*"), loc_of(e)))
                        }
                    };
                    let cols: Vec<_> = rel
                        .columns
                        .iter()
                        .filter(|c| c.qualifier.as_deref() == Some(q.as_str()))
                        .collect();
                    if cols.is_empty() {
                        return Err(PlanError::new(
                            "unknown_table",
                            format!("unknown table \"{q}\" in {q}.*"),
                            at,
                        ));
                    }
                    for c in cols {
                        items.push((column_expr(c), c.name.clone()));
                    }
                }
            }
        }

        let group_exprs: Vec<Expr> = match &s.group_by {
            GroupByExpr::Expressions(exprs, mods) => {
                if !mods.is_empty() {
                    return Err(unsupported("GROUP BY modifiers", at));
                }
                exprs
                    .iter()
                    .map(|e| match e {
                        // GROUP BY 2 names the second select item.
                        Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                            let n = self.const_usize(e)?;
                            items.get(n.wrapping_sub(1)).map(|(e, _)| e.clone()).ok_or_else(|| {
                                PlanError::new(
                                    "unknown_column",
                                    format!("GROUP BY position {n} is not in the select list"),
                                    loc_of(e),
                                )
                            })
                        }
                        _ => Ok(e.clone()),
                    })
                    .collect::<Result<_>>()?
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", at)),
        };
        let has_aggs =
            items.iter().any(|(e, _)| contains_aggregate(e)) || s.having.as_ref().is_some_and(contains_aggregate);
        let window_items: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| is_window_call(e))
            .map(|(i, _)| i)
            .collect();

        let mut typed_items: Vec<Typed>;
        let post_columns: Vec<ScopeColumn>;
        if has_aggs || !group_exprs.is_empty() || s.having.is_some() {
            if !window_items.is_empty() {
                return Err(unsupported(
                    "window functions together with GROUP BY (use a subquery)",
                    at,
                ));
            }
            let mut keys = Vec::new();
            let mut key_typed = Vec::new();
            for g in &group_exprs {
                if contains_aggregate(g) {
                    return Err(PlanError::new(
                        "aggregate_error",
                        "aggregate functions are not allowed in GROUP BY",
                        loc_of(g),
                    ));
                }
                let t = bind(g, &rel.columns, None)?;
                keys.push((g.to_string(), key_typed.len()));
                key_typed.push(t);
            }
            let mut aggregates = Vec::new();
            let nkeys = key_typed.len();
            let input_cols = rel.columns.clone();
            let mut ctx = GroupContext {
                keys: keys.clone(),
                aggregates: &mut aggregates,
                nkeys,
                input: &input_cols,
            };
            typed_items = Vec::new();
            for (e, _) in &items {
                typed_items.push(bind(e, &[], Some(&mut ctx))?);
            }
            let having = match &s.having {
                Some(h) => {
                    let t = bind(h, &[], Some(&mut ctx))?;
                    expect_bool(&t, h)?;
                    Some(t)
                }
                None => None,
            };
            // Columns of the Reduce's output, for naming.
            let mut reduce_cols: Vec<ScopeColumn> = key_typed
                .iter()
                .zip(&group_exprs)
                .map(|(t, g)| ScopeColumn {
                    qualifier: None,
                    name: default_name(g),
                    ty: t.ty,
                    nullable: t.nullable,
                })
                .collect();
            for (text, _, t) in aggregates.iter() {
                reduce_cols.push(ScopeColumn {
                    qualifier: None,
                    name: text.clone(),
                    ty: t.ty,
                    nullable: t.nullable,
                });
            }
            rel.plan = RelPlan::Reduce {
                input: Box::new(rel.plan),
                group_key: key_typed.into_iter().map(|t| t.expr).collect(),
                aggregates: aggregates.into_iter().map(|(_, a, _)| a).collect(),
                monotonic: rel.monotonic,
            };
            rel.monotonic = false;
            if let Some(h) = having {
                let mut preds = Vec::new();
                split_conjuncts(h.expr, &mut preds);
                rel.plan = RelPlan::Filter {
                    input: Box::new(rel.plan),
                    predicates: preds,
                };
            }
            post_columns = reduce_cols;
        } else {
            typed_items = Vec::new();
            let mut window: Option<(Vec<usize>, Vec<OrderKey>)> = None;
            for (e, _) in &items {
                if is_window_call(e) {
                    let spec = self.plan_row_number(e, &rel.columns)?;
                    if window.as_ref().is_some_and(|w| *w != spec) {
                        return Err(unsupported(
                            "several different window specifications in one SELECT",
                            loc_of(e),
                        ));
                    }
                    window = Some(spec);
                    // Placeholder; rewritten once the TopK is in place.
                    typed_items.push(Typed {
                        expr: ScalarExpr::Column(rel.columns.len()),
                        ty: SqlType::BigInt,
                        nullable: false,
                    });
                } else {
                    typed_items.push(bind(e, &rel.columns, None)?);
                }
            }
            if let Some((partition_by, order_by)) = window {
                rel.plan = RelPlan::TopK {
                    input: Box::new(rel.plan),
                    partition_by,
                    order_by,
                    limit: None,
                    monotonic: rel.monotonic,
                    input_arity: rel.columns.len(),
                };
                rel.monotonic = false;
                rel.columns.push(ScopeColumn {
                    qualifier: None,
                    name: "row_number".into(),
                    ty: SqlType::BigInt,
                    nullable: false,
                });
            }
            post_columns = rel.columns.clone();
        }

        // Final projection: Map the items, then Project onto them.
        let base = post_columns.len();
        let mut outputs = Vec::new();
        let mut exprs = Vec::new();
        for t in &typed_items {
            match t.expr {
                ScalarExpr::Column(i) => outputs.push(i),
                _ => {
                    outputs.push(base + exprs.len());
                    exprs.push(t.expr.clone());
                }
            }
        }
        let mut plan = rel.plan;
        if !exprs.is_empty() {
            plan = RelPlan::Map {
                input: Box::new(plan),
                exprs,
            };
        }
        if outputs.iter().copied().ne(0..base) {
            plan = RelPlan::Project {
                input: Box::new(plan),
                outputs,
            };
        }
        let columns: Vec<ScopeColumn> = typed_items
            .iter()
            .zip(&items)
            .map(|(t, (_, name))| ScopeColumn {
                qualifier: None,
                name: name.clone(),
                ty: t.ty,
                nullable: t.nullable,
            })
            .collect();
        let mut monotonic = rel.monotonic;
        if s.distinct.is_some() {
            if let Some(ast::Distinct::On(_)) = &s.distinct {
                return Err(unsupported("DISTINCT ON", at));
            }
            plan = RelPlan::Distinct { input: Box::new(plan) };
            monotonic = false;
        }
        Ok(Rel {
            plan,
            columns,
            monotonic,
        })
    }

    /// `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` → partition and order columns.
    fn plan_row_number(&mut self, e: &Expr, columns: &[ScopeColumn]) -> Result<(Vec<usize>, Vec<OrderKey>)> {
        let Expr::Function(f) = e else {
            return Err(unsupported("this window expression", loc_of(e)));
        };
        let name = f.name.to_string().to_lowercase();
        if name != "row_number" {
            return Err(unsupported(
                format!("window function {name} (only ROW_NUMBER is)"),
                loc_of(e),
            ));
        }
        let Some(ast::WindowType::WindowSpec(spec)) = &f.over else {
            return Err(unsupported("named windows", loc_of(e)));
        };
        if spec.window_frame.is_some() {
            return Err(unsupported("window frames", loc_of(e)));
        }
        let mut partition = Vec::new();
        for p in &spec.partition_by {
            match bind(p, columns, None)?.expr {
                ScalarExpr::Column(i) => partition.push(i),
                _ => return Err(unsupported("PARTITION BY an expression (use a column)", loc_of(p))),
            }
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            let column = match bind(&o.expr, columns, None)?.expr {
                ScalarExpr::Column(i) => i,
                _ => {
                    return Err(unsupported(
                        "ORDER BY an expression in OVER (use a column)",
                        loc_of(&o.expr),
                    ))
                }
            };
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            order.push(OrderKey {
                column,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
        Ok((partition, order))
    }
}

fn column_expr(c: &ScopeColumn) -> Expr {
    let id = |s: &str| ast::Ident::with_quote('"', s);
    match &c.qualifier {
        Some(q) => Expr::CompoundIdentifier(vec![id(q), id(&c.name)]),
        None => Expr::Identifier(id(&c.name)),
    }
}

/// The output name of an unaliased select item, as PostgreSQL names it.
fn default_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => ident_name(id),
        Expr::CompoundIdentifier(ids) => ids.last().map(ident_name).unwrap_or_default(),
        Expr::Function(f) => f.name.to_string().to_lowercase(),
        Expr::Cast { expr, .. } => default_name(expr),
        Expr::Nested(e) => default_name(e),
        Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

fn is_window_call(e: &Expr) -> bool {
    matches!(e, Expr::Function(f) if f.over.is_some())
}
