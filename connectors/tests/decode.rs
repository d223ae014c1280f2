//! Decoding JSON events into rows for every column type, and encoding rows
//! back to JSON.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use weir_connectors::decode::{datum_to_json, decode_json, encode_json, is_delete, DecodeError};
use weir_operators::repr::{parse_timestamp, Column, Datum, OrdF64, Schema, SqlType};

fn schema(columns: &[(&str, SqlType)]) -> Schema {
    Schema {
        columns: columns
            .iter()
            .map(|(name, ty)| Column {
                name: name.to_string(),
                ty: *ty,
                nullable: true,
            })
            .collect(),
    }
}

/// Decodes `{"v": <json>}` into one column of type `ty`.
fn one(ty: SqlType, json: &str) -> Result<Datum, String> {
    decode_json(format!("{{\"v\": {json}}}").as_bytes(), &schema(&[("v", ty)]))
        .map(|mut row| row.remove(0))
        .map_err(|e| e.to_string())
}

fn dec(s: &str) -> Datum {
    Datum::Decimal(Decimal::from_str(s).unwrap())
}

#[test]
fn booleans() {
    assert_eq!(one(SqlType::Bool, "true"), Ok(Datum::Bool(true)));
    assert_eq!(one(SqlType::Bool, "false"), Ok(Datum::Bool(false)));
    assert_eq!(
        one(SqlType::Bool, "\"true\""),
        Err("column v: expected BOOLEAN, got string \"true\"".into())
    );
    assert_eq!(
        one(SqlType::Bool, "1"),
        Err("column v: expected BOOLEAN, got number 1".into())
    );
}

#[test]
fn integers_and_their_ranges() {
    assert_eq!(one(SqlType::SmallInt, "32767"), Ok(Datum::Int(32767)));
    assert_eq!(one(SqlType::SmallInt, "-32768"), Ok(Datum::Int(-32768)));
    assert_eq!(
        one(SqlType::SmallInt, "32768"),
        Err("column v: value 32768 out of range for SMALLINT".into())
    );
    assert_eq!(one(SqlType::Int, "2147483647"), Ok(Datum::Int(2147483647)));
    assert_eq!(
        one(SqlType::Int, "-2147483649"),
        Err("column v: value -2147483649 out of range for INT".into())
    );
    assert_eq!(one(SqlType::BigInt, "9223372036854775807"), Ok(Datum::Int(i64::MAX)));
    assert_eq!(one(SqlType::BigInt, "-9223372036854775808"), Ok(Datum::Int(i64::MIN)));
    for too_big in [
        "9223372036854775808",
        "1e30",
        "1e400",
        "123456789012345678901234567890123",
    ] {
        assert_eq!(
            one(SqlType::BigInt, too_big),
            Err(format!("column v: value {too_big} out of range for BIGINT"))
        );
    }
    // A zero fraction is still an integer.
    assert_eq!(one(SqlType::Int, "3.0"), Ok(Datum::Int(3)));
    assert_eq!(one(SqlType::Int, "-0.0"), Ok(Datum::Int(0)));
    assert_eq!(one(SqlType::Int, "3e2"), Ok(Datum::Int(300)));
    assert_eq!(
        one(SqlType::Int, "3.5"),
        Err("column v: expected INT, got number 3.5".into())
    );
    assert_eq!(
        one(SqlType::Int, "1e-40"),
        Err("column v: expected INT, got number 1e-40".into())
    );
    assert_eq!(
        one(SqlType::Int, "\"5\""),
        Err("column v: expected INT, got string \"5\"".into())
    );
    assert_eq!(
        one(SqlType::BigInt, "[1]"),
        Err("column v: expected BIGINT, got an array".into())
    );
}

#[test]
fn floats() {
    assert_eq!(one(SqlType::Double, "1.5"), Ok(Datum::Float(OrdF64::new(1.5))));
    assert_eq!(one(SqlType::Double, "2"), Ok(Datum::Float(OrdF64::new(2.0))));
    assert_eq!(one(SqlType::Real, "-2.5e3"), Ok(Datum::Float(OrdF64::new(-2500.0))));
    assert_eq!(one(SqlType::Double, "1e300"), Ok(Datum::Float(OrdF64::new(1e300))));
    assert_eq!(
        one(SqlType::Real, "1e300"),
        Err("column v: value 1e300 out of range for REAL".into())
    );
    assert_eq!(
        one(SqlType::Double, "1e400"),
        Err("column v: value 1e400 out of range for DOUBLE".into())
    );
    assert_eq!(
        one(SqlType::Double, "\"1.5\""),
        Err("column v: expected DOUBLE, got string \"1.5\"".into())
    );
}

#[test]
fn decimals_round_half_away_from_zero_to_their_scale() {
    let money = SqlType::Decimal(12, 2);
    assert_eq!(one(money, "12.5"), Ok(dec("12.50")));
    assert_eq!(one(money, "12"), Ok(dec("12.00")));
    assert_eq!(one(money, "12.345"), Ok(dec("12.35")));
    assert_eq!(one(money, "-12.345"), Ok(dec("-12.35")));
    assert_eq!(one(money, "12.344999"), Ok(dec("12.34")));
    assert_eq!(one(money, "0.005"), Ok(dec("0.01")));
    assert_eq!(one(money, "1e2"), Ok(dec("100.00")));
    assert_eq!(one(money, "1.5E-1"), Ok(dec("0.15")));
    // Exact, not through f64: 0.1 stays 0.1, long numerals keep their digits.
    assert_eq!(one(SqlType::Decimal(28, 20), "0.1"), Ok(dec("0.10000000000000000000")));
    assert_eq!(
        one(SqlType::Decimal(28, 9), "1234567890.123456789"),
        Ok(dec("1234567890.123456789"))
    );
    // Numeric strings are accepted too.
    assert_eq!(one(money, "\"19.999\""), Ok(dec("20.00")));
    assert_eq!(one(money, "\" -3.1 \""), Ok(dec("-3.10")));

    // The scale is exact, so it prints with exactly two digits.
    match one(money, "7.1") {
        Ok(Datum::Decimal(d)) => assert_eq!(d.to_string(), "7.10"),
        other => panic!("{other:?}"),
    }
    // No negative zero.
    match one(money, "-0.004") {
        Ok(Datum::Decimal(d)) => assert_eq!(d.to_string(), "0.00"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decimal_precision_overflow() {
    let money = SqlType::Decimal(12, 2);
    assert_eq!(one(money, "9999999999.99"), Ok(dec("9999999999.99")));
    assert_eq!(one(money, "-9999999999.994"), Ok(dec("-9999999999.99")));
    let overflow =
        |v: &str| format!("column v: value {v} out of range for DECIMAL(12,2) (at most 10 digits before the point)");
    // Rounding up can overflow too.
    assert_eq!(one(money, "9999999999.995"), Err(overflow("9999999999.995")));
    assert_eq!(one(money, "12345678901"), Err(overflow("12345678901")));
    assert_eq!(one(money, "-12345678901.5"), Err(overflow("-12345678901.5")));
    assert_eq!(one(SqlType::Decimal(3, 0), "999.4"), Ok(dec("999")));
    assert_eq!(
        one(SqlType::Decimal(3, 0), "999.5"),
        Err("column v: value 999.5 out of range for DECIMAL(3,0) (at most 3 digits before the point)".into())
    );
    assert_eq!(one(SqlType::Decimal(2, 2), "0.994"), Ok(dec("0.99")));
    assert!(one(SqlType::Decimal(2, 2), "1").is_err());
    assert_eq!(
        one(money, "1e40"),
        Err("column v: value 1e40 out of range for DECIMAL(12,2)".into())
    );
}

#[test]
fn decimal_type_errors() {
    let money = SqlType::Decimal(12, 2);
    assert_eq!(
        one(money, "\"abc\""),
        Err("column v: expected DECIMAL(12,2), got string \"abc\"".into())
    );
    assert_eq!(
        one(money, "\"1_000\""),
        Err("column v: expected DECIMAL(12,2), got string \"1_000\"".into())
    );
    assert_eq!(
        one(money, "true"),
        Err("column v: expected DECIMAL(12,2), got boolean true".into())
    );
    assert_eq!(
        one(money, "{}"),
        Err("column v: expected DECIMAL(12,2), got an object".into())
    );
    // The named column is the real one.
    let s = schema(&[("id", SqlType::BigInt), ("amount", money)]);
    assert_eq!(
        decode_json(br#"{"id": 1, "amount": "abc"}"#, &s)
            .unwrap_err()
            .to_string(),
        "column amount: expected DECIMAL(12,2), got string \"abc\""
    );
}

#[test]
fn text() {
    assert_eq!(one(SqlType::Text, "\"hi\""), Ok(Datum::Text("hi".into())));
    assert_eq!(
        one(SqlType::Text, r#""a\"b\u00e9\n""#),
        Ok(Datum::Text("a\"bé\n".into()))
    );
    assert_eq!(
        one(SqlType::Text, "5"),
        Err("column v: expected TEXT, got number 5".into())
    );
    let long = "x".repeat(100);
    let err = one(SqlType::Text, &format!("[\"{long}\"]")).unwrap_err();
    assert_eq!(err, "column v: expected TEXT, got an array");
    let err = one(SqlType::Bool, &format!("\"{long}\"")).unwrap_err();
    assert!(err.ends_with("…"), "{err}");
    assert!(err.len() < 120, "{err}");
}

#[test]
fn timestamps_both_ways() {
    let ms = parse_timestamp("2024-01-02T03:04:05.678Z").unwrap();
    assert_eq!(
        one(SqlType::Timestamp, "\"2024-01-02T03:04:05.678Z\""),
        Ok(Datum::Timestamp(ms))
    );
    assert_eq!(
        one(SqlType::Timestamp, "\"2024-01-02T04:04:05.678+01:00\""),
        Ok(Datum::Timestamp(ms))
    );
    assert_eq!(one(SqlType::Timestamp, &ms.to_string()), Ok(Datum::Timestamp(ms)));
    assert_eq!(one(SqlType::Timestamp, "-1000"), Ok(Datum::Timestamp(-1000)));
    assert_eq!(
        one(SqlType::Timestamp, "\"yesterday\""),
        Err("column v: expected TIMESTAMP, got string \"yesterday\"".into())
    );
    assert_eq!(
        one(SqlType::Timestamp, "1.5"),
        Err("column v: expected TIMESTAMP, got number 1.5".into())
    );
    assert_eq!(
        one(SqlType::Timestamp, "1e30"),
        Err("column v: value 1e30 out of range for TIMESTAMP".into())
    );
    assert_eq!(datum_to_json(&Datum::Timestamp(ms)), json!("2024-01-02T03:04:05.678Z"));
}

#[test]
fn nulls_missing_fields_and_names() {
    let mut s = schema(&[
        ("id", SqlType::BigInt),
        ("Name", SqlType::Text),
        ("note", SqlType::Text),
    ]);
    let row = decode_json(br#"{"ID": 7, "name": "x", "extra": [1, {"deep": true}]}"#, &s).unwrap();
    assert_eq!(row, vec![Datum::Int(7), Datum::Text("x".into()), Datum::Null]);
    let row = decode_json(br#"{"id": null, "Name": "exact", "NAME": "other", "note": null}"#, &s).unwrap();
    assert_eq!(row, vec![Datum::Null, Datum::Text("exact".into()), Datum::Null]);
    // Names with escapes (decoded, not borrowed from the payload) match too.
    let row = decode_json(br#"{"\u0069d": 8, "Na\u006de": "esc", "n\"ote": "quoted"}"#, &s).unwrap();
    assert_eq!(row, vec![Datum::Int(8), Datum::Text("esc".into()), Datum::Null]);

    s.columns[0].nullable = false;
    assert_eq!(
        decode_json(br#"{"name": "x"}"#, &s),
        Err(DecodeError::Column {
            column: "id".into(),
            reason: "null not allowed".into()
        })
    );
    assert_eq!(
        decode_json(br#"{"id": null}"#, &s).unwrap_err().to_string(),
        "column id: null not allowed"
    );
}

#[test]
fn non_objects_and_bad_json() {
    let s = schema(&[("v", SqlType::Int)]);
    assert_eq!(decode_json(b"[1]", &s), Err(DecodeError::NotAnObject("an array")));
    assert_eq!(
        decode_json(b" 5 ", &s).unwrap_err().to_string(),
        "expected a JSON object, got a number"
    );
    assert!(matches!(decode_json(b"{\"v\": ", &s), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(decode_json(b"nope", &s), Err(DecodeError::InvalidJson(_))));
    assert!(matches!(
        decode_json(b"{\"v\":1} trailing", &s),
        Err(DecodeError::InvalidJson(_))
    ));
    assert!(matches!(decode_json(b"", &s), Err(DecodeError::InvalidJson(_))));
}

#[test]
fn encoding_rows() {
    let s = schema(&[
        ("b", SqlType::Bool),
        ("i", SqlType::BigInt),
        ("f", SqlType::Double),
        ("amount", SqlType::Decimal(12, 2)),
        ("t", SqlType::Text),
        ("ts", SqlType::Timestamp),
        ("n", SqlType::Int),
    ]);
    let row = decode_json(
        br#"{"b": true, "i": -3, "f": 0.25, "amount": 12.5, "t": "x", "ts": "2024-01-01T00:00:00Z"}"#,
        &s,
    )
    .unwrap();
    let encoded = encode_json(&row, &s);
    assert_eq!(
        serde_json::Value::Object(encoded),
        json!({"b": true, "i": -3, "f": 0.25, "amount": "12.50", "t": "x",
               "ts": "2024-01-01T00:00:00.000Z", "n": null})
    );
    // Encoding and decoding again gives the same row.
    let text = serde_json::to_vec(&encode_json(&row, &s)).unwrap();
    assert_eq!(decode_json(&text, &s).unwrap(), row);

    assert_eq!(datum_to_json(&Datum::Float(OrdF64::new(f64::NAN))), json!("NaN"));
    assert_eq!(
        datum_to_json(&Datum::Float(OrdF64::new(f64::INFINITY))),
        json!("Infinity")
    );
    assert_eq!(
        datum_to_json(&Datum::Float(OrdF64::new(f64::NEG_INFINITY))),
        json!("-Infinity")
    );
    assert_eq!(datum_to_json(&dec("-0.00")), json!("0.00"));
    assert_eq!(datum_to_json(&dec("1234567890.10")), json!("1234567890.10"));
    assert_eq!(datum_to_json(&Datum::Int(i64::MAX)), json!(i64::MAX));
}

#[test]
fn upsert_deletes() {
    assert!(is_delete(br#"{"id": 1, "__op": "delete"}"#));
    assert!(is_delete(br#"{"__op": "DELETE", "id": 1}"#));
    assert!(!is_delete(br#"{"id": 1, "__op": "upsert"}"#));
    assert!(!is_delete(br#"{"id": 1}"#));
    assert!(!is_delete(br#"{"id": 1, "__op": 1}"#));
    assert!(!is_delete(br#"["__op", "delete"]"#));
    assert!(!is_delete(b"not json"));
}
