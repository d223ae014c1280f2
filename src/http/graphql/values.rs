//! Between weir's values and GraphQL's: the GraphQL type of each SQL
//! column type, rows as GraphQL objects (the same encoding as the REST
//! API's JSON), GraphQL arguments as the text a view filter parses, and
//! engine errors as GraphQL errors with their code.

use async_graphql::dynamic::ValueAccessor;
use async_graphql::{Error, ErrorExtensions, Name, Value};
use weir_connectors::decode::datum_to_json;
use weir_operators::repr::{Row, Schema, SqlType};

use crate::engine::EngineError;
use crate::http::Problem;

/// 64-bit integers (BIGINT columns, times): GraphQL's `Int` has 32 bits.
pub const BIG_INT: &str = "BigInt";
/// Exact decimals, as strings with exactly their scale's digits (`"12.50"`).
pub const DECIMAL: &str = "Decimal";
/// Timestamps, as RFC 3339 strings.
pub const TIMESTAMP: &str = "Timestamp";

/// The GraphQL type a column of `ty` has.
pub fn graphql_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Bool => "Boolean",
        SqlType::SmallInt | SqlType::Int => "Int",
        SqlType::BigInt => BIG_INT,
        SqlType::Real | SqlType::Double => "Float",
        SqlType::Decimal(..) => DECIMAL,
        SqlType::Text => "String",
        SqlType::Timestamp => TIMESTAMP,
    }
}

/// Whether `s` can name a GraphQL type, field or argument (and is not
/// one of the names GraphQL keeps for introspection).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !s.starts_with("__")
}

/// A row as a GraphQL object keyed by column name.
pub fn row_object(row: &Row, schema: &Schema) -> Value {
    Value::Object(
        schema
            .columns
            .iter()
            .zip(row)
            .map(|(c, d)| (Name::new(&c.name), json_value(datum_to_json(d))))
            .collect(),
    )
}

fn json_value(v: serde_json::Value) -> Value {
    // Every value `datum_to_json` makes (null, bools, numbers, strings) has
    // a GraphQL value.
    Value::from_json(v).unwrap_or(Value::Null)
}

/// The text a view filter parses for an argument's value; `None` for
/// `null` (no filter).
pub fn filter_text(name: &str, v: ValueAccessor<'_>) -> Result<Option<String>, Error> {
    match v.as_value() {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Boolean(b) => Ok(Some(b.to_string())),
        other => Err(Error::new(format!("argument {name}: {other} is not a single value"))),
    }
}

/// A `BigInt` argument as an unsigned number (a time).
pub fn tick_arg(name: &str, v: ValueAccessor<'_>) -> Result<Option<u64>, Error> {
    match v.as_value() {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| Error::new(format!("argument {name}: {n} is not a time (a non-negative integer)"))),
        Value::String(s) => s.parse().map(Some).map_err(|_| {
            Error::new(format!(
                "argument {name}: \"{s}\" is not a time (a non-negative integer)"
            ))
        }),
        other => Err(Error::new(format!("argument {name}: {other} is not a time"))),
    }
}

/// Whether a `BigInt` value is a 64-bit integer (a number, or a string of
/// one, as clients without 64-bit numbers send them).
pub fn is_big_int(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok(),
        _ => false,
    }
}

/// An engine error as a GraphQL error: its message, with the REST API's
/// code (and the SQL's line and column, where it has them) in
/// `extensions`.
pub fn graphql_error(e: EngineError) -> Error {
    problem_error(Problem::from(e))
}

pub fn problem_error(p: Problem) -> Error {
    Error::new(p.message).extend_with(|_, ext| {
        ext.set("code", p.code);
        ext.set("status", p.status.as_u16());
        if let Some((line, column)) = p.at {
            ext.set("line", line);
            ext.set("column", column);
        }
    })
}
