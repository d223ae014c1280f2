//! Splitting ingest bodies: the three accepted shapes and every kind of bad
//! input, with exact positions.

use weir_connectors::ingest::{split_events, IngestError};

fn split(body: &str) -> Vec<String> {
    split_events(body.as_bytes())
        .expect("body splits")
        .into_iter()
        .map(|e| String::from_utf8(e).unwrap())
        .collect()
}

fn error(body: &[u8]) -> String {
    split_events(body).expect_err("body is refused").to_string()
}

#[test]
fn a_single_object() {
    assert_eq!(split(r#"{"a": 1, "b": "x  y"}"#), vec![r#"{"a":1,"b":"x  y"}"#]);
    // Pretty-printed over several lines, with surrounding whitespace.
    assert_eq!(
        split("\n  {\n    \"a\": 1.50,\n    \"nested\": {\"k\": [1, 2]}\n  }\n"),
        vec![r#"{"a":1.50,"nested":{"k":[1,2]}}"#]
    );
}

#[test]
fn an_array_of_objects() {
    assert_eq!(
        split("[{\"a\": 1},\n {\"b\": \"\\\"q\\\" \"}]"),
        vec![r#"{"a":1}"#, r#"{"b":"\"q\" "}"#]
    );
    assert_eq!(split("  [ {} ]  "), vec!["{}"]);
}

#[test]
fn ndjson() {
    assert_eq!(
        split("{\"a\":1}\n\n{\"b\": 2}\r\n  {\"c\":3}\n"),
        vec![r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]
    );
    // Numbers keep their exact text.
    assert_eq!(
        split("{\"x\": 0.1000000000000000000000001}\n{\"x\": 1e400}"),
        vec![r#"{"x":0.1000000000000000000000001}"#, r#"{"x":1e400}"#]
    );
}

#[test]
fn no_events() {
    for body in ["", "   \n\t", "[]", " [ ]\n"] {
        assert_eq!(split_events(body.as_bytes()), Err(IngestError::NoEvents), "{body:?}");
    }
    assert_eq!(error(b""), "no events");
}

#[test]
fn invalid_json_names_line_and_column() {
    let err = split_events(b"{\"a\":1}\n{\"b\":2}\n{\"c\": }\n").unwrap_err();
    assert_eq!(err.position(), Some((3, 7)));
    assert_eq!(err.to_string(), "line 3, column 7: expected value");

    assert_eq!(error(b"{\"a\":1,}"), "line 1, column 8: key must be a string");
    assert_eq!(error(b"[{},\n{},\n]"), "line 3, column 1: trailing comma");
    assert_eq!(error(b"[{\"a\":1},\n {\"a\" 2}]"), "line 2, column 7: expected `:`");
    assert_eq!(error(b"[{\"a\":1}] x"), "line 1, column 11: trailing characters");
    assert_eq!(error(b"{\"a\":1}\nnot json"), "line 2, column 2: expected ident");
}

#[test]
fn truncated_bodies() {
    assert_eq!(
        error(b"{\"a\":1}\n{\"b\":"),
        "line 2, column 5: EOF while parsing a value"
    );
    assert_eq!(error(b"[{\"a\":1}"), "line 1, column 8: EOF while parsing a list");
    // End of input right after a newline: column 0 in serde_json, 1 here.
    assert_eq!(error(b"{\"a\":\n"), "line 2, column 1: EOF while parsing a value");
}

#[test]
fn invalid_utf8_is_refused() {
    let err = split_events(b"{\"a\":\"\xff\"}").unwrap_err();
    assert!(matches!(err, IngestError::InvalidJson { line: 1, .. }), "{err}");
}

#[test]
fn non_objects_are_refused_with_their_number() {
    assert_eq!(
        error(b"[{\"a\":1}, 2]"),
        "line 1, column 11: event 2 is a number, expected a JSON object"
    );
    assert_eq!(
        split_events(b"[{\"a\":1},\n  null]"),
        Err(IngestError::NotAnObject {
            line: 2,
            column: 3,
            event: 2,
            kind: "null"
        })
    );
    assert_eq!(
        error(b"{\"a\":1}\n\"hello\"\n"),
        "line 2, column 1: event 2 is a string, expected a JSON object"
    );
    assert_eq!(
        error(b"42"),
        "line 1, column 1: event 1 is a number, expected a JSON object"
    );
    assert_eq!(
        error(b"[[{\"a\":1}]]"),
        "line 1, column 2: event 1 is an array, expected a JSON object"
    );
    assert_eq!(
        error(b"{}\n{}\n  true"),
        "line 3, column 3: event 3 is a boolean, expected a JSON object"
    );
}
