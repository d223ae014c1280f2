//! The aggregate functions: which names are aggregates, whether an
//! expression calls one, and each one's function and result type.

use sqlparser::ast::{self, Expr};
use weir_operators::repr::SqlType;

use super::error::{type_err, Loc, Result};
use crate::plan::AggFunc;

pub(super) const AGGREGATES: [&str; 5] = ["count", "sum", "min", "max", "avg"];

pub(super) fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |e| {
        if let Expr::Function(f) = e {
            if f.over.is_none() && AGGREGATES.contains(&f.name.to_string().to_lowercase().as_str()) {
                found = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// The aggregate over a value called `name` (one of [`AGGREGATES`]).
pub(super) fn aggregate_func(name: &str) -> AggFunc {
    match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        _ => AggFunc::Avg,
    }
}

/// The result type of aggregate `func` (called `name`) over `input_type`.
pub(super) fn aggregate_type(func: AggFunc, input_type: SqlType, name: &str, at: Loc) -> Result<SqlType> {
    Ok(match func {
        AggFunc::CountRows | AggFunc::Count => SqlType::BigInt,
        AggFunc::Sum | AggFunc::Avg if !input_type.is_numeric() => {
            return Err(type_err(format!("function {name}({input_type}) does not exist"), at))
        }
        AggFunc::Sum => match input_type {
            t if t.is_integer() => SqlType::BigInt,
            SqlType::Real | SqlType::Double => SqlType::Double,
            SqlType::Decimal(_, s) => SqlType::Decimal(28, s),
            t => t,
        },
        AggFunc::Avg => match input_type {
            t if t.is_float() => SqlType::Double,
            SqlType::Decimal(_, s) => SqlType::Decimal(28, s.max(6)),
            _ => SqlType::Decimal(28, 6),
        },
        AggFunc::Min | AggFunc::Max => input_type,
    })
}
