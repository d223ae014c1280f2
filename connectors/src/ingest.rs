//! Splitting an HTTP ingest body into events.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (objects
//! separated by whitespace, usually one per line). A batch is accepted or
//! rejected whole: any invalid JSON or any element that is not an object
//! rejects all of it, with the line and column of the problem in the body,
//! so a producer can fix it and resend without duplicating events.

use serde_json::value::RawValue;

use crate::error::ErrorKind;

/// Why a body was rejected. Lines and columns are 1-based; columns count
/// bytes from the start of the line, as serde_json does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The body holds no event (empty, only whitespace, or `[]`).
    #[error("no events")]
    NoEvents,
    #[error("line {line}, column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// Event number `event` (1-based) is a JSON value but not an object.
    #[error("line {line}, column {column}: event {event} is {kind}, expected a JSON object")]
    NotAnObject {
        line: usize,
        column: usize,
        event: usize,
        kind: &'static str,
    },
}

impl IngestError {
    /// Always [`ErrorKind::User`]: the body is the producer's to fix.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    /// Never: the same body is rejected the same way.
    pub fn retryable(&self) -> bool {
        false
    }

    /// (line, column) of the problem, when it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            IngestError::NoEvents => None,
            IngestError::InvalidJson { line, column, .. } | IngestError::NotAnObject { line, column, .. } => {
                Some((*line, *column))
            }
        }
    }
}

/// Splits `body` into events, each as compact JSON bytes (whitespace
/// outside strings removed; everything else, including the exact text of
/// numbers, kept as sent).
pub fn split_events(body: &[u8]) -> Result<Vec<Vec<u8>>, IngestError> {
    let Some(start) = body.iter().position(|b| !is_json_whitespace(*b)) else {
        return Err(IngestError::NoEvents);
    };
    let values: Vec<&RawValue> = if body[start] == b'[' {
        serde_json::from_slice(body).map_err(|e| invalid_json(&e))?
    } else {
        serde_json::Deserializer::from_slice(body)
            .into_iter::<&RawValue>()
            .collect::<Result<_, _>>()
            .map_err(|e| invalid_json(&e))?
    };
    if values.is_empty() {
        return Err(IngestError::NoEvents);
    }
    let mut events = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let text = value.get().trim_start();
        if text.starts_with('{') {
            events.push(compact(text));
        } else {
            // The raw value borrows from `body`, so its address gives its offset.
            let offset = (text.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
            let (line, column) = line_and_column(body, offset);
            return Err(IngestError::NotAnObject {
                line,
                column,
                event: index + 1,
                kind: json_kind(text),
            });
        }
    }
    Ok(events)
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn invalid_json(e: &serde_json::Error) -> IngestError {
    let full = e.to_string();
    // serde_json appends the position to its message; we report it apart.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    IngestError::InvalidJson {
        line: e.line().max(1),
        // serde_json reports column 0 for an end of input right after a newline.
        column: e.column().max(1),
        message,
    }
}

/// 1-based line and byte column of `offset` in `body`.
fn line_and_column(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

/// "a number", "a string", …, as in "event 2 is a number".
pub(crate) fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Removes whitespace outside strings from valid JSON text.
fn compact(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !is_json_whitespace(b) {
            out.push(b);
            in_string = b == b'"';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers() {
        let text = "{ \"a b\" : [ 1.50 , \"x \\\" y\" ],\n\t\"c\": 1e3 }";
        assert_eq!(compact(text), br#"{"a b":[1.50,"x \" y"],"c":1e3}"#.to_vec());
    }

    #[test]
    fn positions() {
        assert_eq!(line_and_column(b"abc", 0), (1, 1));
        assert_eq!(line_and_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column(b"ab\n", 3), (2, 1));
    }
}
