//! Planning `MATCH_RECOGNIZE` (docs/cep.md): the pattern, `DEFINE` and
//! `MEASURES`, with the `WITHIN` clause that `extensions.rs` cut out of the
//! text before parsing.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, MatchRecognizePattern, MatchRecognizeSymbol,
    RepetitionQuantifier, Spanned, TableFactor, Value, VisitMut, VisitorMut,
};
use weir_operators::cep::{Pattern, Program, Skip, VarId};
use weir_operators::repr::{Datum, SqlType};

use super::aggregate::{aggregate_func, aggregate_type, AGGREGATES};
use super::bind::{bind, function_args};
use super::error::{loc_ident, loc_of, type_err, unsupported, Loc, PlanError, Result};
use super::query::{QueryPlanner, Rel};
use super::scope::{ident_name, resolve, ScopeColumn};
use super::typeconv::Typed;
use super::watermark::combined_watermark;
use crate::expr::ScalarExpr;
use crate::plan::{AggFunc, MatchRecognize, Nav, RelPlan, RowAt};

fn before(a: Loc, b: Loc) -> bool {
    (a.0, a.1) < (b.0, b.1)
}

fn within_span(at: Loc, span: sqlparser::tokenizer::Span) -> bool {
    let (s, e) = (
        Loc(span.start.line, span.start.column),
        Loc(span.end.line, span.end.column),
    );
    !before(at, s) && !before(e, at)
}

/// Largest `{n,m}` bound accepted: bounded repetitions are unrolled.
const MAX_REPEAT: u32 = 1000;

impl QueryPlanner<'_> {
    pub(super) fn plan_match_recognize(&mut self, f: &TableFactor) -> Result<Rel> {
        let TableFactor::MatchRecognize {
            table,
            partition_by,
            order_by,
            measures,
            rows_per_match,
            after_match_skip,
            pattern,
            symbols,
            alias,
        } = f
        else {
            return Err(unsupported(format!("FROM {f}"), loc_of(f)));
        };
        let at = loc_of(f);
        let input = self.plan_factor(table)?;
        if !input.monotonic {
            return Err(PlanError::new(
                "invalid_pattern",
                format!(
                    "MATCH_RECOGNIZE needs an append-only input, and {} can retract rows (a table with a PRIMARY KEY, or a view with updates): a pattern over it would have to take back matches",
                    table
                ),
                loc_of(&**table),
            ));
        }
        let span = f.span();
        let inner = table.span();
        let here = |l: Loc| within_span(l, span) && !within_span(l, inner);
        let within = self.ext.withins.iter().find(|w| here(w.at)).cloned();
        let pattern_at = self.ext.patterns.iter().copied().find(|&l| here(l)).unwrap_or(at);

        // PARTITION BY and ORDER BY name input columns.
        let column_of = |e: &Expr| -> Result<usize> {
            match e {
                Expr::Identifier(id) => resolve(&input.columns, None, &ident_name(id), loc_of(e)),
                Expr::CompoundIdentifier(ids) if ids.len() == 2 => resolve(
                    &input.columns,
                    Some(&ident_name(&ids[0])),
                    &ident_name(&ids[1]),
                    loc_of(e),
                ),
                _ => Err(unsupported(
                    "an expression in PARTITION BY / ORDER BY (name a column)",
                    loc_of(e),
                )),
            }
        };
        let partition: Vec<usize> = partition_by.iter().map(column_of).collect::<Result<_>>()?;
        let [order] = order_by.as_slice() else {
            return Err(PlanError::new(
                "invalid_pattern",
                "MATCH_RECOGNIZE needs ORDER BY exactly one event-time column (TIMESTAMP or BIGINT milliseconds)",
                order_by.first().map_or(at, |o| loc_of(&o.expr)),
            ));
        };
        if matches!(
            order.options.sort,
            Some(ast::OrderBySort::Desc) | Some(ast::OrderBySort::Using(_))
        ) || order.options.nulls_first.is_some()
        {
            return Err(unsupported(
                "ORDER BY … DESC / NULLS in MATCH_RECOGNIZE (rows are matched in event-time order)",
                loc_of(&order.expr),
            ));
        }
        let time_col = column_of(&order.expr)?;
        let time_ty = input.columns[time_col].ty;
        if !matches!(time_ty, SqlType::Timestamp | SqlType::BigInt | SqlType::Int) {
            return Err(PlanError::new(
                "type_error",
                format!(
                    "MATCH_RECOGNIZE orders by event time: \"{}\" is {time_ty}, not TIMESTAMP or BIGINT",
                    input.columns[time_col].name
                ),
                loc_of(&order.expr),
            ));
        }

        // The pattern and its variables, in order of appearance.
        let mut vars: Vec<(String, Ident)> = Vec::new();
        let pattern = lower_pattern(pattern, &mut vars, pattern_at)?;
        if pattern.nullable() {
            return Err(PlanError::new(
                "invalid_pattern",
                "the PATTERN can match no rows at all (every part is optional); make at least one variable required",
                pattern_at,
            ));
        }
        if pattern.has_nullable_loop() {
            return Err(PlanError::new(
                "invalid_pattern",
                "a repeated group in the PATTERN (*, + or {n,}) can match no rows; make its body require a row",
                pattern_at,
            ));
        }
        Program::compile(&pattern).map_err(|e| PlanError::new("invalid_pattern", e.to_string(), pattern_at))?;
        let var_names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
        let var_id = |id: &Ident| -> Option<VarId> {
            var_names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&id.value))
                .and_then(|i| VarId::try_from(i).ok())
        };

        let mut binder = NavBinder {
            vars: &var_names,
            defining: None,
            input: &input.columns,
            navs: Vec::new(),
        };
        let mut defines: Vec<Option<ScalarExpr>> = vec![None; var_names.len()];
        for d in symbols {
            let Some(v) = var_id(&d.symbol) else {
                return Err(PlanError::new(
                    "unknown_name",
                    format!(
                        "DEFINE names {}, which the PATTERN does not use (variables: {})",
                        d.symbol.value,
                        var_names.join(", ")
                    ),
                    loc_ident(&d.symbol),
                ));
            };
            if defines[v as usize].is_some() {
                return Err(PlanError::new(
                    "duplicate_name",
                    format!("{} is defined twice", d.symbol.value),
                    loc_ident(&d.symbol),
                ));
            }
            binder.defining = Some(v);
            let t = binder.bind(&d.definition)?;
            if t.ty != SqlType::Bool {
                return Err(type_err(
                    format!("DEFINE {} must be a condition (BOOLEAN), not {}", d.symbol.value, t.ty),
                    loc_of(&d.definition),
                ));
            }
            defines[v as usize] = Some(t.expr);
        }

        binder.defining = None;
        let qualifier = alias.as_ref().map(|a| ident_name(&a.name));
        let scoped = |name: String, ty: SqlType, nullable: bool| ScopeColumn {
            qualifier: qualifier.clone(),
            name,
            ty,
            nullable,
        };
        let mut measure_exprs = Vec::new();
        let mut measure_cols = Vec::new();
        for m in measures {
            let t = binder.bind(&m.expr)?;
            measure_cols.push(scoped(ident_name(&m.alias), t.ty, t.nullable));
            measure_exprs.push(t.expr);
        }
        let all_rows = match rows_per_match {
            None | Some(ast::RowsPerMatch::OneRow) => false,
            Some(ast::RowsPerMatch::AllRows(None)) => true,
            Some(ast::RowsPerMatch::AllRows(Some(mode))) => {
                return Err(unsupported(format!("ALL ROWS PER MATCH {mode}"), at));
            }
        };
        let skip_var = |id: &Ident| {
            var_id(id).ok_or_else(|| {
                PlanError::new(
                    "unknown_name",
                    format!("AFTER MATCH SKIP names {}, which the PATTERN does not use", id.value),
                    loc_ident(id),
                )
            })
        };
        let skip = match after_match_skip {
            None | Some(ast::AfterMatchSkip::PastLastRow) => Skip::PastLastRow,
            Some(ast::AfterMatchSkip::ToNextRow) => Skip::ToNextRow,
            Some(ast::AfterMatchSkip::ToFirst(id)) => Skip::ToFirst(skip_var(id)?),
            Some(ast::AfterMatchSkip::ToLast(id)) => Skip::ToLast(skip_var(id)?),
        };

        // Output columns (docs/cep.md).
        let mut columns: Vec<ScopeColumn> = partition
            .iter()
            .map(|&i| {
                let c = &input.columns[i];
                scoped(c.name.clone(), c.ty, c.nullable)
            })
            .collect();
        if all_rows {
            let c = &input.columns[time_col];
            columns.push(scoped(c.name.clone(), c.ty, c.nullable));
            columns.extend(measure_cols);
            for (i, c) in input.columns.iter().enumerate() {
                if i != time_col && !partition.contains(&i) {
                    columns.push(scoped(c.name.clone(), c.ty, c.nullable));
                }
            }
        } else {
            columns.extend(measure_cols);
        }
        let watermark = combined_watermark(&input.plan, &|n| self.scope.lookup(n).map(|i| i.watermark));
        let plan = MatchRecognize {
            input_arity: input.columns.len(),
            input: input.plan,
            partition_by: partition,
            order_by: time_col,
            order_by_name: input.columns[time_col].name.clone(),
            pattern,
            vars: var_names.clone(),
            defines,
            measures: measure_exprs,
            navs: binder.navs.into_iter().map(|(n, _)| n).collect(),
            all_rows,
            skip,
            within_ms: within.as_ref().map(|w| w.ms),
            max_rows: weir_operators::cep::DEFAULT_MAX_ROWS,
            emit_timeouts: within.as_ref().is_some_and(|w| w.emit_timeouts),
            watermark,
        };
        Ok(Rel {
            plan: RelPlan::MatchRecognize(Box::new(plan)),
            columns,
            monotonic: true,
        })
    }
}

/// sqlparser's pattern → weir's, collecting variable names.
fn lower_pattern(p: &MatchRecognizePattern, vars: &mut Vec<(String, Ident)>, at: Loc) -> Result<Pattern> {
    Ok(match p {
        MatchRecognizePattern::Symbol(MatchRecognizeSymbol::Named(id)) => {
            let i = match vars.iter().position(|(n, _)| n.eq_ignore_ascii_case(&id.value)) {
                Some(i) => i,
                None => {
                    vars.push((id.value.clone(), id.clone()));
                    vars.len() - 1
                }
            };
            Pattern::Var(
                VarId::try_from(i).map_err(|_| PlanError::new("invalid_pattern", "too many pattern variables", at))?,
            )
        }
        MatchRecognizePattern::Symbol(_) => {
            return Err(unsupported(
                "^ and $ in a PATTERN (a stream has no end to anchor to)",
                at,
            ))
        }
        MatchRecognizePattern::Exclude(_) => return Err(unsupported("{- … -} in a PATTERN", at)),
        MatchRecognizePattern::Permute(_) => return Err(unsupported("PERMUTE in a PATTERN", at)),
        MatchRecognizePattern::Concat(ps) => {
            Pattern::Concat(ps.iter().map(|p| lower_pattern(p, vars, at)).collect::<Result<_>>()?)
        }
        MatchRecognizePattern::Group(p) => lower_pattern(p, vars, at)?,
        MatchRecognizePattern::Alternation(ps) => {
            Pattern::Alt(ps.iter().map(|p| lower_pattern(p, vars, at)).collect::<Result<_>>()?)
        }
        MatchRecognizePattern::Repetition(p, q) => {
            let inner = Box::new(lower_pattern(p, vars, at)?);
            let (q, greedy) = match q {
                RepetitionQuantifier::Reluctant(q) => (&**q, false),
                q => (q, true),
            };
            let (min, max) = match q {
                RepetitionQuantifier::ZeroOrMore => (0, None),
                RepetitionQuantifier::OneOrMore => (1, None),
                RepetitionQuantifier::AtMostOne => (0, Some(1)),
                RepetitionQuantifier::Exactly(n) => (*n, Some(*n)),
                RepetitionQuantifier::AtLeast(n) => (*n, None),
                RepetitionQuantifier::AtMost(n) => (0, Some(*n)),
                RepetitionQuantifier::Range(n, m) => (*n, Some(*m)),
                RepetitionQuantifier::Reluctant(_) => {
                    return Err(PlanError::new(
                        "invalid_pattern",
                        format!("quantifier {q} is doubled"),
                        at,
                    ))
                }
            };
            if max.is_some_and(|m| m < min || m == 0) {
                return Err(PlanError::new(
                    "invalid_pattern",
                    format!("quantifier {q}: the upper bound must be at least 1 and not below the lower bound"),
                    at,
                ));
            }
            if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                return Err(PlanError::new(
                    "invalid_pattern",
                    format!("quantifier {q}: bounds above {MAX_REPEAT} are not supported"),
                    at,
                ));
            }
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            }
        }
    })
}

/// Binds DEFINE and MEASURES expressions: pattern navigation becomes extra
/// columns (see [`MatchRecognize`]), the rest binds as usual.
struct NavBinder<'a> {
    vars: &'a [String],
    /// The variable whose DEFINE is being bound.
    defining: Option<VarId>,
    input: &'a [ScopeColumn],
    navs: Vec<(Nav, Typed)>,
}

/// Names the pattern functions weir knows.
const NAV_FUNCTIONS: [&str; 7] = [
    "first",
    "last",
    "prev",
    "next",
    "match_number",
    "classifier",
    "timed_out",
];

impl NavBinder<'_> {
    fn var(&self, id: &Ident) -> Result<VarId> {
        self.vars
            .iter()
            .position(|n| n.eq_ignore_ascii_case(&id.value))
            .and_then(|i| VarId::try_from(i).ok())
            .ok_or_else(|| {
                PlanError::new(
                    "unknown_name",
                    format!(
                        "{} is not a pattern variable (variables: {})",
                        id.value,
                        self.vars.join(", ")
                    ),
                    loc_ident(id),
                )
            })
    }

    /// The input columns, unqualified (variables qualify them in a rule).
    fn input_scope(&self) -> Vec<ScopeColumn> {
        self.input
            .iter()
            .map(|c| ScopeColumn {
                qualifier: None,
                ..c.clone()
            })
            .collect()
    }

    /// The input columns, unqualified, then one column per navigation.
    fn scope(&self) -> Vec<ScopeColumn> {
        let mut cols = self.input_scope();
        for (i, (_, t)) in self.navs.iter().enumerate() {
            cols.push(ScopeColumn {
                qualifier: None,
                name: nav_name(i),
                ty: t.ty,
                nullable: t.nullable,
            });
        }
        cols
    }

    fn bind(&mut self, e: &Expr) -> Result<Typed> {
        let mut e = e.clone();
        let mut v = Rewrite {
            binder: self,
            error: None,
        };
        let _ = e.visit(&mut v);
        if let Some(err) = v.error {
            return Err(err);
        }
        bind(&e, &self.scope(), None)
    }

    fn push(&mut self, nav: Nav, t: Typed) -> Expr {
        self.navs.push((nav, t));
        Expr::Identifier(Ident::new(nav_name(self.navs.len() - 1)))
    }

    /// `arg` over one row: its variable qualifiers removed, bound over the
    /// input columns. Returns the variable it names (at most one).
    fn row_expr(&self, arg: &Expr, what: &str) -> Result<(Option<VarId>, Typed)> {
        let mut e = arg.clone();
        let mut strip = Strip {
            binder: self,
            var: None,
            error: None,
            what,
        };
        let _ = e.visit(&mut strip);
        if let Some(err) = strip.error {
            return Err(err);
        }
        let var = strip.var;
        Ok((var, bind(&e, &self.input_scope(), None)?))
    }

    /// Where a row expression over `var` starts, `k` rows from the newest
    /// (`last`) or the oldest.
    fn row_at(&self, var: Option<VarId>, k: u64, last: bool) -> RowAt {
        if last && k == 0 && (var.is_none() || var == self.defining) {
            // The match's newest row is the current row (in DEFINE v, so is
            // v's).
            return RowAt::Current;
        }
        if last {
            RowAt::Last { var, k }
        } else {
            RowAt::First { var, k }
        }
    }

    /// Rewrites one pattern construct into a navigation column; `None` for
    /// anything else (then its children are visited).
    fn rewrite(&mut self, e: &Expr) -> Result<Option<Expr>> {
        match e {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let v = self.var(&ids[0])?;
                if Some(v) == self.defining {
                    return Ok(Some(Expr::Identifier(ids[1].clone())));
                }
                let (_, t) = self.row_expr(&Expr::Identifier(ids[1].clone()), "a column")?;
                let nav = Nav::Row {
                    at: RowAt::Last { var: Some(v), k: 0 },
                    prev: 0,
                    expr: t.expr.clone(),
                };
                Ok(Some(self.push(nav, Typed { nullable: true, ..t })))
            }
            Expr::Function(f) if f.over.is_none() => {
                let name = f.name.to_string().to_lowercase();
                let at = loc_of(f);
                if AGGREGATES.contains(&name.as_str()) {
                    return self.aggregate(f, &name).map(Some);
                }
                if !NAV_FUNCTIONS.contains(&name.as_str()) {
                    return Ok(None);
                }
                let args = function_args(f)?;
                let typed = |ty: SqlType, nullable: bool| Typed {
                    expr: ScalarExpr::Literal(Datum::Null),
                    ty,
                    nullable,
                };
                match (name.as_str(), args.as_slice()) {
                    ("match_number", []) => Ok(Some(self.push(Nav::MatchNumber, typed(SqlType::BigInt, true)))),
                    ("classifier", []) => Ok(Some(self.push(Nav::Classifier, typed(SqlType::Text, true)))),
                    ("timed_out", []) => Ok(Some(self.push(Nav::TimedOut, typed(SqlType::Bool, false)))),
                    ("match_number" | "classifier" | "timed_out", _) => {
                        Err(type_err(format!("{name}() takes no arguments"), at))
                    }
                    ("next", _) => Err(unsupported("NEXT (a rule over a stream can only look back)", at)),
                    ("first" | "last", [Some(arg)] | [Some(arg), Some(_)]) => {
                        let k = match args.get(1) {
                            Some(Some(n)) => const_offset(n)?,
                            _ => 0,
                        };
                        let (var, t) = self.row_expr(arg, &format!("{}()", name.to_uppercase()))?;
                        let nav = Nav::Row {
                            at: self.row_at(var, k, name == "last"),
                            prev: 0,
                            expr: t.expr.clone(),
                        };
                        Ok(Some(self.push(nav, Typed { nullable: true, ..t })))
                    }
                    ("prev", [Some(arg)] | [Some(arg), Some(_)]) => {
                        let n = match args.get(1) {
                            Some(Some(n)) => const_offset(n)?,
                            _ => 1,
                        };
                        let (at_row, t) = match arg {
                            Expr::Function(inner)
                                if matches!(inner.name.to_string().to_lowercase().as_str(), "first" | "last") =>
                            {
                                let inner_name = inner.name.to_string().to_lowercase();
                                let inner_args = function_args(inner)?;
                                let (Some(Some(a)), k) = (inner_args.first(), inner_args.get(1)) else {
                                    return Err(type_err(format!("{inner_name} takes an expression"), loc_of(inner)));
                                };
                                let k = match k {
                                    Some(Some(n)) => const_offset(n)?,
                                    _ => 0,
                                };
                                let (var, t) = self.row_expr(a, &format!("{}()", inner_name.to_uppercase()))?;
                                (self.row_at(var, k, inner_name == "last"), t)
                            }
                            other => {
                                let (var, t) = self.row_expr(other, "PREV()")?;
                                (self.row_at(var, 0, true), t)
                            }
                        };
                        let nav = Nav::Row {
                            at: at_row,
                            prev: n,
                            expr: t.expr.clone(),
                        };
                        Ok(Some(self.push(nav, Typed { nullable: true, ..t })))
                    }
                    _ => Err(type_err(
                        format!("{}() takes an expression and an optional offset", name.to_uppercase()),
                        at,
                    )),
                }
            }
            _ => Ok(None),
        }
    }

    /// `count(*)`, `count(v.*)`, `count/sum/avg/min/max(expr over v)`.
    fn aggregate(&mut self, f: &ast::Function, name: &str) -> Result<Expr> {
        let at = loc_of(f);
        let distinct = matches!(
            &f.args,
            FunctionArguments::List(l) if l.duplicate_treatment.is_some()
        );
        if distinct || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(unsupported("DISTINCT / FILTER in a pattern aggregate", at));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(type_err(format!("{name} takes one argument"), at));
        };
        let [arg] = list.args.as_slice() else {
            return Err(type_err(format!("{name} takes one argument"), at));
        };
        let (func, var, expr, input_type) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "count" => {
                (AggFunc::CountRows, None, None, SqlType::BigInt)
            }
            FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(obj)) if name == "count" => {
                let [ast::ObjectNamePart::Identifier(id)] = obj.0.as_slice() else {
                    return Err(type_err("count(v.*) names one pattern variable", at));
                };
                (AggFunc::CountRows, Some(self.var(id)?), None, SqlType::BigInt)
            }
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                let (var, t) = self.row_expr(e, &format!("{name}()"))?;
                (aggregate_func(name), var, Some(t.expr), t.ty)
            }
            _ => return Err(type_err(format!("{name} takes one argument"), at)),
        };
        let ty = aggregate_type(func, input_type, name, at)?;
        let nav = Nav::Agg {
            func,
            var,
            expr,
            input_type,
        };
        Ok(self.push(
            nav,
            Typed {
                expr: ScalarExpr::Literal(Datum::Null),
                ty,
                nullable: !matches!(func, AggFunc::CountRows | AggFunc::Count),
            },
        ))
    }
}

fn nav_name(i: usize) -> String {
    format!("__match_{i}")
}

/// A constant, non-negative row offset (`LAST(v.x, 2)`, `PREV(x, 3)`).
fn const_offset(e: &Expr) -> Result<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse()
                .map_err(|_| type_err(format!("{n} is not a row offset (a whole number ≥ 0)"), loc_of(e))),
            _ => Err(type_err("a row offset is a whole number ≥ 0", loc_of(e))),
        },
        _ => Err(type_err("a row offset must be a constant", loc_of(e))),
    }
}

/// Replaces pattern constructs, outermost first.
struct Rewrite<'b, 'a> {
    binder: &'b mut NavBinder<'a>,
    error: Option<PlanError>,
}

/// Applies one visitor step's outcome: a replacement for `e`, nothing, or
/// an error that stops the walk.
fn replace(e: &mut Expr, outcome: Result<Option<Expr>>, error: &mut Option<PlanError>) -> ControlFlow<()> {
    match outcome {
        Ok(Some(new)) => *e = new,
        Ok(None) => {}
        Err(err) => {
            *error = Some(err);
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

impl VisitorMut for Rewrite<'_, '_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let outcome = self.binder.rewrite(e);
        replace(e, outcome, &mut self.error)
    }
}

/// Removes variable qualifiers from an expression over one row, noting the
/// variable; nested pattern functions are refused.
struct Strip<'b, 'a> {
    binder: &'b NavBinder<'a>,
    var: Option<VarId>,
    error: Option<PlanError>,
    what: &'b str,
}

impl VisitorMut for Strip<'_, '_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let result = match e {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => match self.binder.var(&ids[0]) {
                Ok(v) if self.var.is_some_and(|w| w != v) => Err(PlanError::new(
                    "invalid_pattern",
                    format!("{} may refer to one pattern variable only", self.what),
                    loc_ident(&ids[0]),
                )),
                Ok(v) => {
                    self.var = Some(v);
                    Ok(Some(Expr::Identifier(ids[1].clone())))
                }
                Err(err) => Err(err),
            },
            Expr::Function(f) => {
                let name = f.name.to_string().to_lowercase();
                if NAV_FUNCTIONS.contains(&name.as_str()) || AGGREGATES.contains(&name.as_str()) {
                    Err(unsupported(
                        format!("{}() inside {}", name.to_uppercase(), self.what),
                        loc_of(f),
                    ))
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        };
        replace(e, result, &mut self.error)
    }
}
