//! The common case of [`crate::decode::decode_json`] in one pass over the
//! event: each field's value is parsed straight into its column's datum,
//! with no list of fields in between and no second look at a value's text.
//!
//! # Contract
//! [`decode_row`] gives `Some(row)` only where the full decoder gives
//! `Ok(row)`. It gives up (`None`) on anything it does not handle exactly as
//! the full decoder does: a field name that matches a column only
//! case-insensitively, a number where the column needs its text (REAL,
//! DOUBLE, DECIMAL, an integer written `3.0`), a type mismatch, a missing
//! NOT NULL column, invalid JSON. The full decoder then decides, and says
//! why a record is refused.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use weir_operators::repr::{parse_timestamp, Datum, Row, Schema, SqlType, Str};

use crate::decode::{decimal_from_str, int_range, FieldName};

/// The event as a row of `schema`, when the one pass can decide it alone
/// (see the module's contract).
pub fn decode_row(payload: &[u8], schema: &Schema) -> Option<Row> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let row = de.deserialize_map(RowVisitor { schema }).ok()?;
    de.end().ok()?;
    let complete = schema.columns.iter().zip(&row).all(|(c, d)| c.nullable || !d.is_null());
    complete.then_some(row)
}

struct RowVisitor<'s> {
    schema: &'s Schema,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let columns = &self.schema.columns;
        let mut row: Row = Vec::with_capacity(columns.len());
        row.resize(columns.len(), Datum::Null);
        while let Some(FieldName(name)) = map.next_key::<FieldName<'de>>()? {
            match columns.iter().position(|c| c.name == name) {
                // The last occurrence wins, as in the full decoder.
                Some(i) => row[i] = map.next_value_seed(ValueSeed(columns[i].ty))?,
                None if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) => {
                    return Err(serde::de::Error::custom("a case-insensitive match"));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(row)
    }
}

/// One field's value as a datum of its column's type.
struct ValueSeed(SqlType);

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Datum;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Datum, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn give_up<E: serde::de::Error>() -> E {
    E::custom("left to the full decoder")
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Datum;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of type {}", self.0)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Datum, E> {
        Ok(Datum::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Datum, E> {
        match self.0 {
            SqlType::Bool => Ok(Datum::Bool(v)),
            _ => Err(give_up()),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Datum, E> {
        if self.0 == SqlType::Timestamp {
            return Ok(Datum::Timestamp(v));
        }
        match int_range(self.0) {
            Some((min, max)) if (min..=max).contains(&v) => Ok(Datum::Int(v)),
            _ => Err(give_up()),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Datum, E> {
        i64::try_from(v).map_err(|_| give_up()).and_then(|v| self.visit_i64(v))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Datum, E> {
        self.visit_str(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Datum, E> {
        match self.0 {
            SqlType::Text => Ok(Datum::Text(Str::from(v))),
            SqlType::Timestamp => parse_timestamp(v).map(Datum::Timestamp).ok_or_else(give_up),
            SqlType::Decimal(precision, scale) => decimal_from_str(v, precision, scale)
                .map(Datum::Decimal)
                .ok_or_else(give_up),
            _ => Err(give_up()),
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_operators::repr::Column;

    use super::*;
    use crate::decode::decode_fields;

    fn column(name: &str, ty: SqlType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
        }
    }

    /// Random events, most of them well-formed, with the edge cases of the
    /// full decoder's rules mixed in.
    fn event(rand: &mut impl FnMut(usize) -> usize) -> String {
        const NAMES: [&str; 10] = ["id", "kind", "price", "ts", "n", "ok", "f", "ID", "Kind", "extra"];
        const VALUES: [&str; 40] = [
            "1",
            "-7",
            "0",
            "-0",
            "3.0",
            "2e2",
            "1e40",
            "32767",
            "32768",
            "-2147483649",
            "9223372036854775807",
            "9223372036854775808",
            "12345678901234567890123",
            "1.5",
            "null",
            "true",
            "false",
            "\"a\"",
            "\"OrderPlaced\"",
            "\"with \\\"escapes\\\" \\u00e9\"",
            "\"22.75\"",
            "\" 22.755 \"",
            "\"1e3\"",
            "\"1_000\"",
            "\"abc\"",
            "\"2026-12-01T21:00:58.991Z\"",
            "\"2026-02-30\"",
            "\"2024-01-01T01:00:00+01:00\"",
            "[1,2]",
            "{\"a\":1}",
            "\"\"",
            "\"a very long text that is not inline at all\"",
            "99999999999999999999.99",
            "\"99999999.999\"",
            "-12.5",
            "\"-0.00\"",
            "1.0e0",
            "\"x\\ny\"",
            "{}",
            "[]",
        ];
        let n = rand(7);
        let mut fields = Vec::new();
        for _ in 0..n {
            let name = NAMES[rand(NAMES.len())];
            let name = if rand(20) == 0 {
                format!("{}\\u0064", &name[..name.len() - 1])
            } else {
                name.to_string()
            };
            // Mostly a value of the column's type, else any.
            let fitting: &[&str] = match name.as_str() {
                "id" | "n" => &["1", "-7", "0", "32767"],
                "kind" => &["\"a\"", "\"OrderPlaced\"", "\"x\\ny\"", "null"],
                "price" => &["\"22.75\"", "\" 22.755 \"", "\"-0.00\"", "null"],
                "ts" => &["\"2026-12-01T21:00:58.991Z\"", "1700000000000", "null"],
                "ok" => &["true", "false"],
                _ => &VALUES,
            };
            let value = if rand(4) == 0 {
                VALUES[rand(VALUES.len())]
            } else {
                fitting[rand(fitting.len())]
            };
            fields.push(format!("\"{name}\"{}:{value}", if rand(5) == 0 { " " } else { "" }));
        }
        let mut text = format!("{{{}}}", fields.join(","));
        match rand(30) {
            0 => text.push_str(" x"),
            1 => text.truncate(text.len() / 2),
            2 => text = "[1]".into(),
            3 => text = "  ".to_string() + &text + "\n",
            _ => {}
        }
        text
    }

    #[test]
    fn one_pass_agrees_with_the_full_decoder() {
        let schema = Schema {
            columns: vec![
                column("id", SqlType::BigInt, false),
                column("kind", SqlType::Text, true),
                column("price", SqlType::Decimal(6, 2), true),
                column("ts", SqlType::Timestamp, true),
                column("n", SqlType::SmallInt, true),
                column("ok", SqlType::Bool, true),
                column("f", SqlType::Double, true),
            ],
        };
        let mut x: u64 = 7;
        let mut rand = |n: usize| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % n as u64) as usize
        };
        let (mut decided, mut accepted) = (0, 0);
        for _ in 0..200_000 {
            let e = event(&mut rand);
            let full = decode_fields(e.as_bytes(), &schema);
            accepted += usize::from(full.is_ok());
            if let Some(row) = decode_row(e.as_bytes(), &schema) {
                decided += 1;
                assert_eq!(full, Ok(row), "{e}");
            }
        }
        // The one pass is exercised: a good part of what the full decoder
        // accepts here (the rest has DOUBLE numbers, names in another case
        // or integers written with a fraction).
        assert!(decided * 4 > accepted, "{decided} of {accepted}");
        let shop = br#"{"customer_id":198,"order_id":1000,"price":"22.75","product":"sku-thermos","quantity":2,"ts":"2026-12-01T21:00:58.991Z","type":"OrderPlaced"}"#;
        let orders = Schema {
            columns: vec![
                column("type", SqlType::Text, true),
                column("order_id", SqlType::BigInt, false),
                column("customer_id", SqlType::BigInt, true),
                column("product", SqlType::Text, true),
                column("quantity", SqlType::Int, true),
                column("price", SqlType::Decimal(10, 2), true),
                column("ts", SqlType::Timestamp, true),
            ],
        };
        let row = decode_row(shop, &orders).expect("a shop event is decided in one pass");
        assert_eq!(Ok(row), decode_fields(shop, &orders));
    }
}
