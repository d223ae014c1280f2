//! JSON events to rows of a table, and rows back to JSON.
//!
//! Decoding ([`decode_json`]) maps an event object onto a [`Schema`]:
//! fields match columns case-insensitively (an exact-case match wins), extra
//! fields are ignored, and a missing field or JSON `null` is SQL NULL. Each
//! type accepts:
//!
//! | column type | JSON |
//! |---|---|
//! | BOOLEAN | `true` / `false` |
//! | SMALLINT, INT, BIGINT | a number with no fraction (`3` or `3.0`) in the type's range |
//! | REAL, DOUBLE | any finite number |
//! | DECIMAL(p,s) | a number or a numeric string, rounded half away from zero to `s` digits; at most `p - s` digits before the point |
//! | TEXT, VARCHAR | a string |
//! | TIMESTAMP | an RFC 3339 string, or an integer of milliseconds since the epoch |
//!
//! Numbers are read from their JSON text, never through `f64`, so decimals
//! stay exact.
//!
//! Encoding ([`encode_json`], [`datum_to_json`]) is the inverse for output;
//! decimals become strings with exactly their scale's digits (`"12.50"`) so
//! money stays exact through JavaScript clients.
//!
//! # Kafka keys
//!
//! [`decode_key`] reads a Kafka record's key as the key columns of an
//! upsert table: a JSON object, a bare JSON value for a one-column key, or
//! a TEXT key's plain text.
//!
//! # Upsert deletes
//!
//! For a table with a PRIMARY KEY, an event carrying the key columns and
//! `"__op": "delete"` deletes that key's row ([`is_delete`]); any other event
//! inserts or replaces it.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use weir_operators::repr::{format_timestamp, parse_timestamp, Datum, OrdF64, Row, Schema, SqlType, Str};

use crate::error::ErrorKind;
use crate::ingest::json_kind;

/// Why an event could not be decoded into a row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// One column's value does not fit its type, e.g. `column amount:
    /// expected DECIMAL(12,2), got string "abc"`.
    #[error("column {column}: {reason}")]
    Column { column: String, reason: String },
}

impl DecodeError {
    /// Always [`ErrorKind::User`]: the event does not fit the table.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    /// Never: the same event fails the same way.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// Why a Kafka record's key could not be read as the key columns
/// ([`decode_key`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// The key is a JSON object, or a one-column key's bare JSON value,
    /// that does not fit the key columns.
    #[error("key: {0}")]
    Decode(DecodeError),
    /// The key is not a JSON object and there are several key columns.
    #[error("key: expected a JSON object with the key columns {}", .columns.join(", "))]
    NotAnObject { columns: Vec<String> },
    /// A one-column key that is neither JSON nor (for a TEXT column) text.
    #[error("key: expected {ty} as JSON, got {text:?}")]
    NotJson { ty: SqlType, text: String },
}

impl KeyDecodeError {
    /// Always [`ErrorKind::User`]: the record's key does not fit the table.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    /// Never: the same key fails the same way.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// The fields of one JSON object, in document order, each value kept as its
/// raw JSON text. Names are borrowed from the payload unless they hold
/// escapes: decoding allocates nothing per field.
struct Fields<'a>(Vec<(FieldName<'a>, &'a RawValue)>);

/// A field name, borrowed from the payload where it can be.
pub(crate) struct FieldName<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FieldName<'de>, E> {
                Ok(FieldName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<FieldName<'de>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

impl<'a> Fields<'a> {
    /// The value of column `name`: an exact-case match, else a
    /// case-insensitive one; the last occurrence wins, as in most JSON
    /// parsers.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        let exact = self.0.iter().rev().find(|(key, _)| key.0 == name);
        exact
            .or_else(|| self.0.iter().rev().find(|(key, _)| key.0.eq_ignore_ascii_case(name)))
            .map(|(_, value)| *value)
    }
}

fn parse_object(payload: &[u8]) -> Result<Fields<'_>, DecodeError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Validate first so that garbage is reported as invalid JSON.
        let value: &RawValue = serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
        return Err(DecodeError::NotAnObject(json_kind(value.get())));
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

/// Decodes one JSON event into a row of `schema` (see the module doc for the
/// rules).
pub fn decode_json(payload: &[u8], schema: &Schema) -> Result<Row, DecodeError> {
    match crate::one_pass::decode_row(payload, schema) {
        Some(row) => Ok(row),
        None => decode_fields(payload, schema),
    }
}

/// [`decode_json`] field by field: decides every event, and says why one
/// is refused.
pub(crate) fn decode_fields(payload: &[u8], schema: &Schema) -> Result<Row, DecodeError> {
    let fields = parse_object(payload)?;
    schema
        .columns
        .iter()
        .map(|column| {
            let datum = match fields.get(&column.name) {
                Some(raw) if raw.get() != "null" => decode_value(raw.get(), column.ty),
                _ if !column.nullable => Err("null not allowed".to_string()),
                _ => Ok(Datum::Null),
            };
            datum.map_err(|reason| DecodeError::Column {
                column: column.name.clone(),
                reason,
            })
        })
        .collect()
}

/// A Kafka record's key as the key columns of an upsert table: a JSON
/// object holding them; for a one-column key also the bare JSON value
/// (`42`, `"a"`), or for a TEXT key the key's text as it is (Kafka's
/// string serializer).
pub fn decode_key(bytes: &[u8], schema: &Schema) -> Result<Row, KeyDecodeError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return decode_json(bytes, schema).map_err(KeyDecodeError::Decode);
    }
    let [column] = schema.columns.as_slice() else {
        return Err(KeyDecodeError::NotAnObject {
            columns: schema.columns.iter().map(|c| c.name.clone()).collect(),
        });
    };
    if serde_json::from_slice::<&RawValue>(bytes).is_ok() {
        let mut wrapped = Vec::with_capacity(bytes.len() + column.name.len() + 8);
        wrapped.extend_from_slice(serde_json::to_string(&column.name).unwrap_or_default().as_bytes());
        wrapped.push(b':');
        wrapped.extend_from_slice(bytes);
        let object = [b"{".as_slice(), &wrapped, b"}"].concat();
        return decode_json(&object, schema).map_err(KeyDecodeError::Decode);
    }
    match (column.ty, std::str::from_utf8(bytes)) {
        (SqlType::Text, Ok(text)) => Ok(vec![Datum::Text(text.into())]),
        _ => Err(KeyDecodeError::NotJson {
            ty: column.ty,
            text: String::from_utf8_lossy(bytes).into_owned(),
        }),
    }
}

/// Whether `payload` is an upsert delete: an object with `"__op": "delete"`
/// (case-insensitive). Anything else, including invalid JSON, is not.
pub fn is_delete(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Op {
        #[serde(rename = "__op")]
        op: Option<String>,
    }
    serde_json::from_slice::<Op>(payload)
        .ok()
        .and_then(|o| o.op)
        .is_some_and(|op| op.eq_ignore_ascii_case("delete"))
}

/// `text` is the raw JSON of a non-null value.
fn decode_value(text: &str, ty: SqlType) -> Result<Datum, String> {
    let mismatch = || format!("expected {ty}, got {}", describe(text));
    let is_number = json_kind(text) == "a number";
    let is_string = text.starts_with('"');
    match ty {
        SqlType::Bool => match text {
            "true" => Ok(Datum::Bool(true)),
            "false" => Ok(Datum::Bool(false)),
            _ => Err(mismatch()),
        },
        SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            if !is_number {
                return Err(mismatch());
            }
            let (min, max) = int_range(ty).unwrap_or((i64::MIN, i64::MAX));
            match integer(text) {
                Integer::Exact(v) if (min..=max).contains(&v) => Ok(Datum::Int(v)),
                Integer::Exact(_) | Integer::TooLarge => Err(format!("value {text} out of range for {ty}")),
                Integer::Fractional => Err(mismatch()),
            }
        }
        SqlType::Real | SqlType::Double => {
            if !is_number {
                return Err(mismatch());
            }
            let limit = if ty == SqlType::Real { f32::MAX as f64 } else { f64::MAX };
            match text.parse::<f64>() {
                Ok(v) if v.abs() <= limit => Ok(Datum::Float(OrdF64::new(v))),
                _ => Err(format!("value {text} out of range for {ty}")),
            }
        }
        SqlType::Decimal(precision, scale) => {
            let quoted;
            let numeral = if is_number {
                text
            } else if is_string {
                quoted = json_string(text).ok_or_else(mismatch)?;
                numeral_in(&quoted).ok_or_else(mismatch)?
            } else {
                return Err(mismatch());
            };
            decimal(numeral, precision, scale)
                .map(Datum::Decimal)
                .map_err(|e| e.describe(numeral, ty))
        }
        SqlType::Text => {
            if !is_string {
                return Err(mismatch());
            }
            json_string(text)
                .map(|s| Datum::Text(Str::from(s.as_ref())))
                .ok_or_else(mismatch)
        }
        SqlType::Timestamp => {
            if is_string {
                let s = json_string(text).ok_or_else(mismatch)?;
                return parse_timestamp(&s).map(Datum::Timestamp).ok_or_else(mismatch);
            }
            if !is_number {
                return Err(mismatch());
            }
            match integer(text) {
                Integer::Exact(ms) => Ok(Datum::Timestamp(ms)),
                Integer::TooLarge => Err(format!("value {text} out of range for {ty}")),
                Integer::Fractional => Err(mismatch()),
            }
        }
    }
}

enum Integer {
    Exact(i64),
    /// Integral but outside `i64`.
    TooLarge,
    Fractional,
}

/// The text of a JSON string literal, `text` being one already checked by
/// the parser (a `RawValue`): without escapes it is the text between the
/// quotes, borrowed; with escapes it is unescaped into a new string.
fn json_string(text: &str) -> Option<Cow<'_, str>> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// Reads a JSON number as an integer; `3.0` and `3e2` are integers.
fn integer(text: &str) -> Integer {
    if let Ok(v) = text.parse::<i64>() {
        return Integer::Exact(v);
    }
    match parse_decimal(text) {
        Some(d) if d.fract().is_zero() => d.to_i64().map_or(Integer::TooLarge, Integer::Exact),
        Some(_) => Integer::Fractional,
        // Beyond `Decimal`: huge (`1e40`) or tiny (`1e-40`) magnitudes.
        None => match text.parse::<f64>() {
            Ok(v) if v.is_infinite() || v.fract() == 0.0 => Integer::TooLarge,
            _ => Integer::Fractional,
        },
    }
}

/// Parses a numeral (`-12.5`, `1e3`, `.5`) exactly; `None` when it does not
/// fit a `Decimal` (28 significant digits; excess fraction digits round).
fn parse_decimal(numeral: &str) -> Option<Decimal> {
    if numeral.contains(['e', 'E']) {
        Decimal::from_scientific(numeral)
            .or_else(|_| Decimal::from_scientific_lossy(numeral))
            .ok()
    } else {
        Decimal::from_str(numeral).ok()
    }
}

/// Why a numeral is not a DECIMAL(p, s).
enum DecimalError {
    /// Beyond `Decimal`'s 28 digits.
    TooLarge,
    /// More digits before the point than `p - s`.
    Precision(u8),
}

impl DecimalError {
    fn describe(&self, numeral: &str, ty: SqlType) -> String {
        match self {
            DecimalError::TooLarge => format!("value {numeral} out of range for {ty}"),
            DecimalError::Precision(digits) => {
                format!("value {numeral} out of range for {ty} (at most {digits} digits before the point)")
            }
        }
    }
}

/// A numeral as a DECIMAL(precision, scale), rounded to the scale.
fn decimal(numeral: &str, precision: u8, scale: u8) -> Result<Decimal, DecimalError> {
    let value = parse_decimal(numeral).ok_or(DecimalError::TooLarge)?;
    round_to_type(value, precision, scale).ok_or(DecimalError::Precision(precision.saturating_sub(scale)))
}

/// The text of a JSON string (unescaped) as a DECIMAL(precision, scale),
/// as [`decode_json`] reads it; `None` when it is not one.
pub(crate) fn decimal_from_str(text: &str, precision: u8, scale: u8) -> Option<Decimal> {
    decimal(numeral_in(text)?, precision, scale).ok()
}

/// The numeral a DECIMAL's JSON string holds: its text without surrounding
/// blanks, when that is a plain numeral.
fn numeral_in(text: &str) -> Option<&str> {
    let s = text.trim();
    is_numeral(s).then_some(s)
}

/// The values an integer type holds (`None`: not an integer type).
pub(crate) fn int_range(ty: SqlType) -> Option<(i64, i64)> {
    match ty {
        SqlType::SmallInt => Some((i16::MIN as i64, i16::MAX as i64)),
        SqlType::Int => Some((i32::MIN as i64, i32::MAX as i64)),
        SqlType::BigInt => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// Rounds `value` half away from zero to `scale` digits and gives it exactly
/// that scale; `None` when it then has more than `precision - scale` digits
/// before the point.
fn round_to_type(value: Decimal, precision: u8, scale: u8) -> Option<Decimal> {
    let mut rounded = value.round_dp_with_strategy(u32::from(scale), RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(u32::from(scale));
    if rounded.is_zero() {
        // No "-0.00": equal values must print alike.
        rounded.set_sign_positive(true);
    }
    let integer_digits = u32::from(precision.saturating_sub(scale));
    // 10^28 is the largest power of ten a Decimal holds; every Decimal is below 10^29.
    if integer_digits <= 28 {
        let limit = Decimal::from_i128_with_scale(10i128.pow(integer_digits), 0);
        if rounded.abs() >= limit {
            return None;
        }
    }
    Some(rounded)
}

/// Whether `s` is a plain numeral: optional sign, digits with an optional
/// point, optional exponent. (Stricter than `Decimal::from_str`, which also
/// takes `1_000`.)
fn is_numeral(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `string "abc"`, `number 3.5`, `boolean true`, `an object`… for messages;
/// long values are cut.
fn describe(text: &str) -> String {
    const MAX: usize = 60;
    let shown = if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text.to_string()
    };
    match json_kind(text) {
        "a string" => format!("string {shown}"),
        "a number" => format!("number {shown}"),
        "a boolean" => format!("boolean {shown}"),
        kind => kind.to_string(),
    }
}

/// A row as a JSON object keyed by column name. (Key order follows
/// serde_json's `Map`: sorted by name unless its `preserve_order` feature is
/// on.)
pub fn encode_json(row: &Row, schema: &Schema) -> Map<String, Value> {
    schema
        .columns
        .iter()
        .zip(row)
        .map(|(column, datum)| (column.name.clone(), datum_to_json(datum)))
        .collect()
}

/// One value as JSON: NULL → `null`; non-finite floats → `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; decimals → strings with exactly their scale's
/// digits (`"12.50"`); timestamps → RFC 3339 strings.
pub fn datum_to_json(datum: &Datum) -> Value {
    // Every datum is a null, bool, number or string: this cannot fail.
    serde_json::to_value(JsonDatum(datum)).unwrap_or(Value::Null)
}

/// A datum serialised as [`datum_to_json`] says, without building a
/// [`Value`] first.
pub struct JsonDatum<'a>(pub &'a Datum);

impl Serialize for JsonDatum<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Datum::Null => s.serialize_unit(),
            Datum::Bool(b) => s.serialize_bool(*b),
            Datum::Int(i) => s.serialize_i64(*i),
            Datum::Float(f) => {
                let v = f.get();
                if v.is_finite() {
                    s.serialize_f64(v)
                } else if v.is_nan() {
                    s.serialize_str("NaN")
                } else if v > 0.0 {
                    s.serialize_str("Infinity")
                } else {
                    s.serialize_str("-Infinity")
                }
            }
            Datum::Decimal(d) => {
                let mut d = *d;
                if d.is_zero() {
                    d.set_sign_positive(true);
                }
                s.collect_str(&d)
            }
            Datum::Text(t) => s.serialize_str(t),
            Datum::Timestamp(ms) => s.serialize_str(&format_timestamp(*ms)),
        }
    }
}

/// A row serialised as [`encode_json`] says (an object keyed by column
/// name), without building it first.
pub struct JsonRow<'a>(pub &'a Row, pub &'a Schema);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.1.columns.len()))?;
        for (column, datum) in self.1.columns.iter().zip(self.0) {
            map.serialize_entry(&column.name, &JsonDatum(datum))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals() {
        for ok in ["1", "-1.5", "+2", ".5", "5.", "1e3", "1.5E-2"] {
            assert!(is_numeral(ok), "{ok}");
        }
        for bad in ["", "-", ".", "1_000", "1e", "e3", "1.2.3", "NaN", "0x10", " 1"] {
            assert!(!is_numeral(bad), "{bad}");
        }
    }

    #[test]
    fn keys_decode_as_objects_bare_values_or_text() {
        use weir_operators::repr::Column;
        let one = |ty| Schema {
            columns: vec![Column {
                name: "id".into(),
                ty,
                nullable: false,
            }],
        };
        assert_eq!(
            decode_key(b"{\"id\": 7}", &one(SqlType::BigInt)),
            Ok(vec![Datum::Int(7)])
        );
        assert_eq!(decode_key(b"7", &one(SqlType::BigInt)), Ok(vec![Datum::Int(7)]));
        assert_eq!(
            decode_key(b"\"a\"", &one(SqlType::Text)),
            Ok(vec![Datum::Text("a".into())])
        );
        assert_eq!(
            decode_key(b"abc", &one(SqlType::Text)),
            Ok(vec![Datum::Text("abc".into())])
        );
        assert!(decode_key(b"abc", &one(SqlType::BigInt)).is_err());
        assert!(decode_key(b"\"x\"", &one(SqlType::BigInt)).is_err());
    }

    #[test]
    fn key_errors_read_as_before() {
        use weir_operators::repr::Column;
        let column = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: false,
        };
        let one = Schema {
            columns: vec![column("id", SqlType::BigInt)],
        };
        let two = Schema {
            columns: vec![column("a", SqlType::BigInt), column("b", SqlType::Text)],
        };
        let message = |bytes: &[u8], schema: &Schema| decode_key(bytes, schema).unwrap_err().to_string();
        assert_eq!(message(b"abc", &one), "key: expected BIGINT as JSON, got \"abc\"");
        assert_eq!(
            message(b"7", &two),
            "key: expected a JSON object with the key columns a, b"
        );
        assert_eq!(
            message(b"\"x\"", &one),
            "key: column id: expected BIGINT, got string \"x\""
        );
        assert_eq!(decode_key(b"abc", &one).unwrap_err().kind(), ErrorKind::User);
        assert!(!decode_key(b"abc", &one).unwrap_err().retryable());
    }
}
