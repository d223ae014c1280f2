//! Binding scalar expressions: SQL expressions to typed [`ScalarExpr`]s
//! over the columns in scope, with aggregates resolved to a Reduce's
//! outputs inside a grouped query.

use rust_decimal::Decimal;
use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};
use weir_operators::repr::{Datum, OrdF64, SqlType};

use super::aggregate::{aggregate_func, aggregate_type, contains_aggregate, AGGREGATES};
use super::error::{loc_of, type_err, unsupported, Loc, PlanError, Result};
use super::scope::{ident_name, resolve, ScopeColumn};
use super::typeconv::{check_type, coerce, coerce_for_compare, common_type, expect_bool, literal, sql_type, Typed};
use crate::expr::{ArithOp, CmpOp, Func, ScalarExpr};
use crate::plan::{AggFunc, Aggregate};

/// How aggregates are resolved while binding an expression: outside a
/// grouped query they are errors; inside, group keys and aggregates map to
/// the Reduce's output columns.
pub(super) struct GroupContext<'a> {
    /// GROUP BY expressions (as SQL text) with their output column.
    pub(super) keys: Vec<(String, usize)>,
    pub(super) aggregates: &'a mut Vec<(String, Aggregate, Typed)>,
    pub(super) nkeys: usize,
    /// The pre-aggregation scope, where aggregate arguments are bound.
    pub(super) input: &'a [ScopeColumn],
}

/// Binds a SQL expression against `columns`. With a group context, column
/// references must be group keys and aggregates become Reduce outputs.
pub(super) fn bind(e: &Expr, columns: &[ScopeColumn], mut group: Option<&mut GroupContext>) -> Result<Typed> {
    let at = loc_of(e);
    if let Some(g) = group.as_deref_mut() {
        let text = e.to_string();
        if let Some((_, k)) = g.keys.iter().find(|(t, _)| *t == text) {
            let k = *k;
            // Re-derive the key's type by binding it over the input.
            let t = bind(e, g.input, None)?;
            return Ok(Typed {
                expr: ScalarExpr::Column(k),
                ty: t.ty,
                nullable: t.nullable,
            });
        }
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_lowercase();
            if f.over.is_none() && AGGREGATES.contains(&name.as_str()) {
                return bind_aggregate(f, &name, g);
            }
        }
    }
    // Binds a sub-expression in the same scope and group context.
    macro_rules! sub {
        ($x:expr) => {
            bind($x, columns, group.as_deref_mut())
        };
    }
    match e {
        Expr::Identifier(id) => bind_column(columns, None, &ident_name(id), at, group.is_some()),
        Expr::CompoundIdentifier(ids) => {
            if ids.len() != 2 {
                return Err(unsupported(format!("name {e}"), at));
            }
            bind_column(
                columns,
                Some(&ident_name(&ids[0])),
                &ident_name(&ids[1]),
                at,
                group.is_some(),
            )
        }
        Expr::Nested(inner) => sub!(inner),
        Expr::Value(v) => bind_value(&v.value, at),
        Expr::TypedString(ts) => {
            let ty = sql_type(&ts.data_type, at)?;
            let text = match &ts.value.value {
                Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            };
            let d = crate::expr::cast(Datum::Text(text.into()), ty)
                .map_err(|err| PlanError::new("type_error", err.to_string(), at))?;
            Ok(literal(d, ty))
        }
        Expr::IsNull(x) | Expr::IsNotNull(x) => {
            let t = sub!(x)?;
            let is_null = ScalarExpr::IsNull(Box::new(t.expr));
            Ok(Typed {
                expr: if matches!(e, Expr::IsNull(_)) {
                    is_null
                } else {
                    ScalarExpr::Not(Box::new(is_null))
                },
                ty: SqlType::Bool,
                nullable: false,
            })
        }
        Expr::IsTrue(x) | Expr::IsFalse(x) | Expr::IsNotTrue(x) | Expr::IsNotFalse(x) => {
            let t = sub!(x)?;
            let want = matches!(e, Expr::IsTrue(_) | Expr::IsNotTrue(_));
            let test = ScalarExpr::Coalesce(vec![
                ScalarExpr::Cmp(
                    CmpOp::Eq,
                    Box::new(t.expr),
                    Box::new(ScalarExpr::Literal(Datum::Bool(want))),
                ),
                ScalarExpr::Literal(Datum::Bool(false)),
            ]);
            let negate = matches!(e, Expr::IsNotTrue(_) | Expr::IsNotFalse(_));
            Ok(Typed {
                expr: if negate { ScalarExpr::Not(Box::new(test)) } else { test },
                ty: SqlType::Bool,
                nullable: false,
            })
        }
        Expr::UnaryOp { op, expr } => {
            let t = sub!(expr)?;
            match op {
                UnaryOperator::Not => {
                    check_type(&t, SqlType::Bool, "NOT", at)?;
                    Ok(Typed {
                        expr: ScalarExpr::Not(Box::new(t.expr)),
                        ..t
                    })
                }
                UnaryOperator::Minus => {
                    if !t.ty.is_numeric() {
                        return Err(type_err(format!("operator does not exist: - {}", t.ty), at));
                    }
                    Ok(Typed {
                        expr: ScalarExpr::Neg(Box::new(t.expr)),
                        ..t
                    })
                }
                UnaryOperator::Plus => Ok(t),
                other => Err(unsupported(format!("operator {other}"), at)),
            }
        }
        Expr::BinaryOp { left, op, right } => {
            let l = sub!(left)?;
            let r = sub!(right)?;
            bind_binary(op, l, r, at)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let x = sub!(expr)?;
            let lo = sub!(low)?;
            let hi = sub!(high)?;
            let ge = bind_binary(&BinaryOperator::GtEq, x.clone(), lo, at)?;
            let le = bind_binary(&BinaryOperator::LtEq, x, hi, at)?;
            let both = ScalarExpr::And(vec![ge.expr, le.expr]);
            Ok(Typed {
                expr: if *negated {
                    ScalarExpr::Not(Box::new(both))
                } else {
                    both
                },
                ty: SqlType::Bool,
                nullable: ge.nullable || le.nullable,
            })
        }
        Expr::In {
            expr, target, negated, ..
        } => {
            let ast::InTarget::List(list) = target else {
                return Err(unsupported("IN (subquery)", at));
            };
            let x = sub!(expr)?;
            let mut items = Vec::new();
            let mut nullable = x.nullable;
            for item in list {
                let t = sub!(item)?;
                let t = coerce_for_compare(&x, t, loc_of(item))?;
                nullable |= t.nullable;
                items.push(t.expr);
            }
            let e = ScalarExpr::InList(Box::new(x.expr), items);
            Ok(Typed {
                expr: if *negated { ScalarExpr::Not(Box::new(e)) } else { e },
                ty: SqlType::Bool,
                nullable,
            })
        }
        Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        }
        | Expr::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => {
            if *any || escape_char.is_some() {
                return Err(unsupported("LIKE ANY / ESCAPE", at));
            }
            let x = sub!(expr)?;
            let p = sub!(pattern)?;
            check_type(&x, SqlType::Text, "LIKE", at)?;
            check_type(&p, SqlType::Text, "LIKE", at)?;
            let e2 = ScalarExpr::Like {
                expr: Box::new(x.expr),
                pattern: Box::new(p.expr),
                case_insensitive: matches!(e, Expr::ILike { .. }),
            };
            Ok(Typed {
                expr: if *negated { ScalarExpr::Not(Box::new(e2)) } else { e2 },
                ty: SqlType::Bool,
                nullable: x.nullable || p.nullable,
            })
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = match operand {
                Some(o) => Some(sub!(o)?),
                None => None,
            };
            let mut whens = Vec::new();
            let mut results = Vec::new();
            for cw in conditions {
                let c = sub!(&cw.condition)?;
                let cond = match &operand {
                    Some(o) => bind_binary(&BinaryOperator::Eq, o.clone(), c, loc_of(&cw.condition))?,
                    None => {
                        expect_bool(&c, &cw.condition)?;
                        c
                    }
                };
                let r = sub!(&cw.result)?;
                whens.push(cond.expr);
                results.push((r, &cw.result));
            }
            let otherwise = match else_result {
                Some(x) => Some((sub!(x)?, &**x)),
                None => None,
            };
            let all: Vec<&(Typed, &Expr)> = results.iter().chain(otherwise.iter()).collect();
            let ty = common_type(&all.iter().map(|(t, e)| (t, *e)).collect::<Vec<_>>(), "CASE")?;
            let nullable = otherwise.is_none() || all.iter().any(|(t, _)| t.nullable);
            let whens = whens
                .into_iter()
                .zip(results)
                .map(|(c, (r, _))| (c, coerce(r.expr, r.ty, ty)))
                .collect();
            let otherwise = match otherwise {
                Some((t, _)) => coerce(t.expr, t.ty, ty),
                None => ScalarExpr::Literal(Datum::Null),
            };
            Ok(Typed {
                expr: ScalarExpr::Case {
                    whens,
                    otherwise: Box::new(otherwise),
                },
                ty,
                nullable,
            })
        }
        Expr::Cast {
            expr,
            data_type,
            format,
            kind,
            ..
        } => {
            if format.is_some() || matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                return Err(unsupported("TRY_CAST / CAST … FORMAT", at));
            }
            let t = sub!(expr)?;
            let ty = sql_type(data_type, at)?;
            Ok(Typed {
                expr: ScalarExpr::Cast(Box::new(t.expr), ty),
                ty,
                nullable: t.nullable,
            })
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![sub!(expr)?];
            let from = match substring_from {
                Some(f) => sub!(f)?,
                None => literal(Datum::Int(1), SqlType::BigInt),
            };
            args.push(from);
            if let Some(f) = substring_for {
                args.push(sub!(f)?);
            }
            bind_call(Func::Substring, args, at)
        }
        Expr::Extract { field, expr, .. } => {
            let unit = field.to_string().to_lowercase();
            let t = sub!(expr)?;
            bind_call(
                Func::Extract,
                vec![literal(Datum::Text(unit.into()), SqlType::Text), t],
                at,
            )
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if f.over.is_some() {
                return Err(unsupported(
                    format!("window function {name} here (ROW_NUMBER() OVER may only be a select item)"),
                    at,
                ));
            }
            if AGGREGATES.contains(&name.as_str()) {
                return Err(PlanError::new(
                    "aggregate_error",
                    format!("aggregate function {name} is not allowed here"),
                    at,
                ));
            }
            let args = function_args(f)?;
            let mut bound = Vec::new();
            for a in &args {
                match a {
                    Some(x) => bound.push(sub!(x)?),
                    None => return Err(unsupported(format!("{name}(*)"), at)),
                }
            }
            match name.as_str() {
                "coalesce" => {
                    if bound.is_empty() {
                        return Err(type_err("coalesce needs arguments", at));
                    }
                    let pairs: Vec<(&Typed, &Expr)> = bound.iter().zip(args.iter().map(|a| a.unwrap_or(e))).collect();
                    let ty = common_type(&pairs, "COALESCE")?;
                    let nullable = bound.iter().all(|t| t.nullable);
                    Ok(Typed {
                        expr: ScalarExpr::Coalesce(bound.into_iter().map(|t| coerce(t.expr, t.ty, ty)).collect()),
                        ty,
                        nullable,
                    })
                }
                "nullif" => {
                    if bound.len() != 2 {
                        return Err(type_err("nullif takes two arguments", at));
                    }
                    let b = bound.pop().ok_or_else(|| type_err("nullif takes two arguments", at))?;
                    let a = bound.pop().ok_or_else(|| type_err("nullif takes two arguments", at))?;
                    let b = coerce_for_compare(&a, b, at)?;
                    Ok(Typed {
                        expr: ScalarExpr::NullIf(Box::new(a.expr), Box::new(b.expr)),
                        ty: a.ty,
                        nullable: true,
                    })
                }
                "lower" => bind_call(Func::Lower, bound, at),
                "upper" => bind_call(Func::Upper, bound, at),
                "length" | "char_length" | "character_length" => bind_call(Func::Length, bound, at),
                "substring" | "substr" => bind_call(Func::Substring, bound, at),
                "abs" => bind_call(Func::Abs, bound, at),
                "round" => bind_call(Func::Round, bound, at),
                "date_trunc" => bind_call(Func::DateTrunc, bound, at),
                "date_part" => bind_call(Func::Extract, bound, at),
                other => Err(PlanError::new(
                    "unknown_function",
                    format!("function {other} does not exist"),
                    at,
                )),
            }
        }
        other => Err(unsupported(format!("expression {other}"), at)),
    }
}

/// `Some(expr)` per argument, `None` for `*`.
pub(super) fn function_args(f: &ast::Function) -> Result<Vec<Option<&Expr>>> {
    let at = loc_of(f);
    match &f.args {
        FunctionArguments::None => Ok(vec![]),
        FunctionArguments::Subquery(_) => Err(unsupported("subqueries as function arguments", at)),
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(unsupported("clauses inside a function call", at));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(Some(e)),
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Ok(None),
                    _ => Err(unsupported("named or qualified-wildcard arguments", at)),
                })
                .collect()
        }
    }
}

fn bind_aggregate(f: &ast::Function, name: &str, g: &mut GroupContext) -> Result<Typed> {
    let at = loc_of(f);
    if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
        return Err(unsupported("FILTER / WITHIN GROUP on aggregates", at));
    }
    let distinct = matches!(
        &f.args,
        FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct))
    );
    let args = function_args(f)?;
    let text = Expr::Function(f.clone()).to_string();
    if let Some(i) = g.aggregates.iter().position(|(t, _, _)| *t == text) {
        let t = g.aggregates[i].2.clone();
        return Ok(Typed {
            expr: ScalarExpr::Column(g.nkeys + i),
            ..t
        });
    }
    let (func, arg) = match (name, args.as_slice()) {
        ("count", [None]) if !distinct => (AggFunc::CountRows, None),
        (_, [Some(a)]) => {
            if contains_aggregate(a) {
                return Err(PlanError::new(
                    "aggregate_error",
                    "aggregate function calls cannot be nested",
                    loc_of(*a),
                ));
            }
            let t = bind(a, g.input, None)?;
            (aggregate_func(name), Some(t))
        }
        _ => return Err(type_err(format!("{name} takes exactly one argument"), at)),
    };
    let input_type = arg.as_ref().map(|t| t.ty).unwrap_or(SqlType::BigInt);
    let out_ty = aggregate_type(func, input_type, name, at)?;
    let agg = Aggregate {
        func,
        expr: arg.map(|t| t.expr).unwrap_or(ScalarExpr::Literal(Datum::Null)),
        distinct,
        input_type,
    };
    let typed = Typed {
        expr: ScalarExpr::Column(g.nkeys + g.aggregates.len()),
        ty: out_ty,
        nullable: !matches!(func, AggFunc::CountRows | AggFunc::Count),
    };
    g.aggregates.push((text, agg, typed.clone()));
    Ok(typed)
}

fn bind_column(columns: &[ScopeColumn], q: Option<&str>, name: &str, at: Loc, grouped: bool) -> Result<Typed> {
    if grouped {
        return Err(PlanError::new(
            "group_by_error",
            format!(
                "column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function",
                match q {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                }
            ),
            at,
        ));
    }
    let i = resolve(columns, q, name, at)?;
    Ok(Typed {
        expr: ScalarExpr::Column(i),
        ty: columns[i].ty,
        nullable: columns[i].nullable,
    })
}

fn bind_value(v: &Value, at: Loc) -> Result<Typed> {
    Ok(match v {
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                literal(
                    Datum::Int(i),
                    if i32::try_from(i).is_ok() {
                        SqlType::Int
                    } else {
                        SqlType::BigInt
                    },
                )
            } else if n.contains(['e', 'E']) {
                let f: f64 = n.parse().map_err(|_| type_err(format!("bad number {n}"), at))?;
                literal(Datum::Float(OrdF64::new(f)), SqlType::Double)
            } else {
                let d: Decimal = n
                    .parse()
                    .map_err(|_| type_err(format!("number {n} is out of range"), at))?;
                let s = d.scale() as u8;
                literal(Datum::Decimal(d), SqlType::Decimal(28, s))
            }
        }
        Value::SingleQuotedString(s) => literal(Datum::Text(s.clone().into()), SqlType::Text),
        Value::Boolean(b) => literal(Datum::Bool(*b), SqlType::Bool),
        Value::Null => Typed {
            expr: ScalarExpr::Literal(Datum::Null),
            ty: SqlType::Text,
            nullable: true,
        },
        other => return Err(unsupported(format!("literal {other}"), at)),
    })
}

fn bind_binary(op: &BinaryOperator, l: Typed, r: Typed, at: Loc) -> Result<Typed> {
    use BinaryOperator as B;
    let nullable = l.nullable || r.nullable;
    match op {
        B::And | B::Or => {
            check_type(&l, SqlType::Bool, &op.to_string(), at)?;
            check_type(&r, SqlType::Bool, &op.to_string(), at)?;
            let mut parts = Vec::new();
            let is_and = matches!(op, B::And);
            for x in [l.expr, r.expr] {
                match x {
                    ScalarExpr::And(es) if is_and => parts.extend(es),
                    ScalarExpr::Or(es) if !is_and => parts.extend(es),
                    x => parts.push(x),
                }
            }
            Ok(Typed {
                expr: if is_and {
                    ScalarExpr::And(parts)
                } else {
                    ScalarExpr::Or(parts)
                },
                ty: SqlType::Bool,
                nullable,
            })
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
            let cmp = match op {
                B::Eq => CmpOp::Eq,
                B::NotEq => CmpOp::NotEq,
                B::Lt => CmpOp::Lt,
                B::LtEq => CmpOp::LtEq,
                B::Gt => CmpOp::Gt,
                _ => CmpOp::GtEq,
            };
            // Coerce whichever side is an untyped string literal.
            let (l, r) = if matches!(l.expr, ScalarExpr::Literal(Datum::Text(_))) && r.ty != SqlType::Text {
                (coerce_for_compare(&r, l, at)?, r)
            } else {
                let r = coerce_for_compare(&l, r, at)?;
                (l, r)
            };
            Ok(Typed {
                expr: ScalarExpr::Cmp(cmp, Box::new(l.expr), Box::new(r.expr)),
                ty: SqlType::Bool,
                nullable,
            })
        }
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            let arith = match op {
                B::Plus => ArithOp::Add,
                B::Minus => ArithOp::Sub,
                B::Multiply => ArithOp::Mul,
                B::Divide => ArithOp::Div,
                _ => ArithOp::Mod,
            };
            let lnull = l.expr == ScalarExpr::Literal(Datum::Null);
            let rnull = r.expr == ScalarExpr::Literal(Datum::Null);
            let (lt, rt) = (if lnull { r.ty } else { l.ty }, if rnull { l.ty } else { r.ty });
            if !lt.is_numeric() || !rt.is_numeric() {
                return Err(type_err(format!("operator does not exist: {} {op} {}", l.ty, r.ty), at));
            }
            let ty = match (lt, rt) {
                (a, b) if a.is_integer() && b.is_integer() => SqlType::BigInt,
                (a, b) if a.is_float() || b.is_float() => SqlType::Double,
                (SqlType::Decimal(p1, s1), SqlType::Decimal(p2, s2)) => match arith {
                    ArithOp::Mul => SqlType::Decimal(28, (s1 + s2).min(28)),
                    ArithOp::Div => SqlType::Decimal(28, s1.max(s2).max(16)),
                    _ => SqlType::Decimal(p1.max(p2).min(28), s1.max(s2)),
                },
                (SqlType::Decimal(_, s), _) | (_, SqlType::Decimal(_, s)) => match arith {
                    ArithOp::Div => SqlType::Decimal(28, s.max(16)),
                    _ => SqlType::Decimal(28, s),
                },
                _ => SqlType::Double,
            };
            Ok(Typed {
                expr: ScalarExpr::Arith(arith, Box::new(l.expr), Box::new(r.expr), ty),
                ty,
                nullable,
            })
        }
        B::StringConcat => Ok(Typed {
            expr: ScalarExpr::Concat(Box::new(l.expr), Box::new(r.expr)),
            ty: SqlType::Text,
            nullable,
        }),
        other => Err(unsupported(format!("operator {other}"), at)),
    }
}

fn bind_call(f: Func, args: Vec<Typed>, at: Loc) -> Result<Typed> {
    let nullable = args.iter().any(|a| a.nullable);
    let n = args.len();
    let arity_ok = match f {
        Func::Lower | Func::Upper | Func::Length | Func::Abs => n == 1,
        Func::Substring => n == 2 || n == 3,
        Func::Round => n == 1 || n == 2,
        Func::DateTrunc | Func::Extract => n == 2,
    };
    if !arity_ok {
        return Err(type_err(
            format!("wrong number of arguments to {f:?}").to_lowercase(),
            at,
        ));
    }
    let want = |i: usize, ok: &dyn Fn(SqlType) -> bool, what: &str| -> Result<()> {
        let a = &args[i];
        if a.expr != ScalarExpr::Literal(Datum::Null) && !ok(a.ty) {
            return Err(type_err(
                format!("{:?} argument {} must be {what}, got {}", f, i + 1, a.ty).to_lowercase(),
                at,
            ));
        }
        Ok(())
    };
    let ty = match f {
        Func::Lower | Func::Upper => {
            want(0, &|t| t == SqlType::Text, "text")?;
            SqlType::Text
        }
        Func::Length => {
            want(0, &|t| t == SqlType::Text, "text")?;
            SqlType::BigInt
        }
        Func::Substring => {
            want(0, &|t| t == SqlType::Text, "text")?;
            for i in 1..n {
                want(i, &|t| t.is_integer(), "an integer")?;
            }
            SqlType::Text
        }
        Func::Abs => {
            want(0, &|t| t.is_numeric(), "numeric")?;
            args[0].ty
        }
        Func::Round => {
            want(0, &|t| t.is_numeric(), "numeric")?;
            if n == 2 {
                want(1, &|t| t.is_integer(), "an integer")?;
            }
            match args[0].ty {
                SqlType::Decimal(..) => {
                    let digits = match args.get(1).map(|a| &a.expr) {
                        Some(ScalarExpr::Literal(Datum::Int(d))) => (*d).clamp(0, 28) as u8,
                        None => 0,
                        Some(_) => 6,
                    };
                    SqlType::Decimal(28, digits)
                }
                t => t,
            }
        }
        Func::DateTrunc => {
            want(0, &|t| t == SqlType::Text, "text")?;
            want(1, &|t| t == SqlType::Timestamp, "a timestamp")?;
            SqlType::Timestamp
        }
        Func::Extract => {
            want(0, &|t| t == SqlType::Text, "text")?;
            want(1, &|t| t == SqlType::Timestamp, "a timestamp")?;
            SqlType::Decimal(28, 3)
        }
    };
    Ok(Typed {
        expr: ScalarExpr::Call(f, args.into_iter().map(|a| a.expr).collect()),
        ty,
        nullable,
    })
}
