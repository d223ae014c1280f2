//! SQL types: type names to [`SqlType`], the common type of two, coercions
//! between them, and the type checks binding applies.

use sqlparser::ast::{self, DataType, Expr};
use weir_operators::repr::{Datum, SqlType};

use super::error::{loc_of, type_err, unsupported, Loc, PlanError, Result};
use crate::expr::ScalarExpr;

/// A typed scalar expression.
#[derive(Clone, Debug)]
pub(super) struct Typed {
    pub(super) expr: ScalarExpr,
    pub(super) ty: SqlType,
    pub(super) nullable: bool,
}

pub(super) fn sql_type(dt: &DataType, at: Loc) -> Result<SqlType> {
    use DataType as D;
    Ok(match dt {
        D::Bool | D::Boolean => SqlType::Bool,
        D::SmallInt(_) | D::Int2(_) => SqlType::SmallInt,
        D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int,
        D::BigInt(_) | D::Int8(_) => SqlType::BigInt,
        D::Real | D::Float4 => SqlType::Real,
        D::Double(_) | D::DoublePrecision | D::Float8 | D::Float(_) => SqlType::Double,
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => {
            let (p, s) = match info {
                ast::ExactNumberInfo::None => (28, 6),
                ast::ExactNumberInfo::Precision(p) => (*p, 0),
                ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p, (*s).max(0) as u64),
            };
            if p == 0 || p > 28 || s > p {
                return Err(PlanError::new(
                    "type_error",
                    format!(
                        "DECIMAL({p},{s}) is out of range: precision must be 1..=28 and scale at most the precision"
                    ),
                    at,
                ));
            }
            SqlType::Decimal(p as u8, s as u8)
        }
        D::Text
        | D::Varchar(_)
        | D::String(_)
        | D::CharVarying(_)
        | D::CharacterVarying(_)
        | D::Char(_)
        | D::Character(_) => SqlType::Text,
        D::Timestamp(_, tz) => {
            if matches!(tz, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) {
                return Err(unsupported("TIMESTAMP WITH TIME ZONE", at));
            }
            SqlType::Timestamp
        }
        other => return Err(unsupported(format!("type {other}"), at)),
    })
}

/// The common type of two types, for UNION, CASE, COALESCE and comparisons.
pub(super) fn unify(a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType::*;
    if a == b {
        return Some(a);
    }
    Some(match (a, b) {
        (x, y) if x.is_integer() && y.is_integer() => BigInt,
        (x, y) if x.is_float() && y.is_numeric() || y.is_float() && x.is_numeric() => Double,
        (Decimal(p1, s1), Decimal(p2, s2)) => {
            let s = s1.max(s2);
            Decimal(((p1 - s1).max(p2 - s2) + s).min(28), s)
        }
        (Decimal(p, s), x) | (x, Decimal(p, s)) if x.is_integer() => Decimal((p.max(19 + s)).min(28), s),
        _ => return None,
    })
}

pub(super) fn coerce(e: ScalarExpr, from: SqlType, to: SqlType) -> ScalarExpr {
    let same_class = from == to
        || (from.is_integer() && to.is_integer())
        || (from.is_float() && to.is_float())
        || (matches!(from, SqlType::Decimal(..)) && matches!(to, SqlType::Decimal(..)));
    if same_class {
        e
    } else {
        ScalarExpr::Cast(Box::new(e), to)
    }
}

pub(super) fn literal(d: Datum, ty: SqlType) -> Typed {
    let nullable = d.is_null();
    Typed {
        expr: ScalarExpr::Literal(d),
        ty,
        nullable,
    }
}

pub(super) fn check_type(t: &Typed, want: SqlType, what: &str, at: Loc) -> Result<()> {
    if t.ty != want && t.expr != ScalarExpr::Literal(Datum::Null) {
        return Err(type_err(format!("{what} expects {want}, got {}", t.ty), at));
    }
    Ok(())
}

pub(super) fn common_type(items: &[(&Typed, &Expr)], what: &str) -> Result<SqlType> {
    let mut ty: Option<SqlType> = None;
    for (t, e) in items {
        if t.expr == ScalarExpr::Literal(Datum::Null) {
            continue;
        }
        ty = Some(match ty {
            None => t.ty,
            Some(prev) => unify(prev, t.ty).ok_or_else(|| {
                type_err(
                    format!("{what} types {prev} and {} cannot be matched", t.ty),
                    loc_of(*e),
                )
            })?,
        });
    }
    Ok(ty.unwrap_or(SqlType::Text))
}

/// Makes `t` comparable with `with`: string literals become timestamps or
/// numbers where the other side is one (as PostgreSQL's unknown-typed
/// literals do); numbers of different kinds compare by value.
pub(super) fn coerce_for_compare(with: &Typed, t: Typed, at: Loc) -> Result<Typed> {
    if t.expr == ScalarExpr::Literal(Datum::Null) || with.expr == ScalarExpr::Literal(Datum::Null) {
        return Ok(t);
    }
    if with.ty == t.ty || (with.ty.is_numeric() && t.ty.is_numeric()) {
        return Ok(t);
    }
    if let ScalarExpr::Literal(Datum::Text(s)) = &t.expr {
        if matches!(with.ty, SqlType::Timestamp | SqlType::Bool) || with.ty.is_numeric() {
            let d = crate::expr::cast(Datum::Text(s.clone()), with.ty).map_err(|err| type_err(err.to_string(), at))?;
            return Ok(literal(d, with.ty));
        }
    }
    Err(type_err(format!("cannot compare {} with {}", with.ty, t.ty), at))
}

pub(super) fn expect_bool(t: &Typed, e: &Expr) -> Result<()> {
    if t.ty != SqlType::Bool && !(t.expr == ScalarExpr::Literal(Datum::Null)) {
        return Err(PlanError::new(
            "type_error",
            format!("argument of WHERE/ON/HAVING must be BOOLEAN, not {}", t.ty),
            loc_of(e),
        ));
    }
    Ok(())
}
