//! The requests of one time's changes of a view: which changes act (by
//! default inserts only), each one's URL, body and idempotency key.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_operators::repr::{Diff, Row, Schema, Tick};

use super::ActionConfig;
use crate::decode::encode_json;
use crate::sink::by_key;

/// What happened to a key of the view at one time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One request, as kept in the outbox until its outcome is recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// Its place in the sink's outbox: requests of one key go in this order.
    pub seq: u64,
    /// The view's key of the row (JSON), or the whole row for a view
    /// without one: requests of one key are sent one after another.
    pub key: String,
    pub op: Op,
    pub as_of: Tick,
    pub url: String,
    pub fallback_url: Option<String>,
    /// The row (the new one; the old one for a delete), as JSON.
    pub body: String,
    /// Sink, time, key and the change's place among the key's changes at
    /// that time: the same for every attempt, across restarts.
    pub idempotency_key: String,
    /// When it entered the outbox, in ms since the Unix epoch.
    pub accepted_ms: i64,
    /// How often it was sent through again from the dead letters.
    #[serde(default)]
    pub replay: u32,
}

/// The requests `changes` (one time's, at `as_of`) make, in key order;
/// unnumbered (`seq` 0): the outbox numbers them as it takes them in.
pub fn requests(config: &ActionConfig, as_of: Tick, changes: &[(Row, Diff)], now_ms: i64) -> Vec<ActionRequest> {
    let by_key = by_key(changes, config.key.as_deref());
    let key_schema = Schema {
        columns: match &config.key {
            Some(cols) => cols.iter().map(|&c| config.schema.columns[c].clone()).collect(),
            None => config.schema.columns.clone(),
        },
    };
    let mut out = Vec::new();
    for (key, (before, after)) in by_key {
        let key_json = Value::Object(encode_json(&key, &key_schema)).to_string();
        let key_hash = fnv64(key_json.as_bytes());
        // A keyed view's row replaced at one time is an update; a view
        // without a key has inserts and deletes only.
        let changes: Vec<(Op, &Row)> = if config.key.is_some() {
            (0..before.len().max(after.len()))
                .map(|i| match (before.get(i), after.get(i)) {
                    (Some(_), Some(a)) => (Op::Update, *a),
                    (None, Some(a)) => (Op::Insert, *a),
                    (Some(b), _) => (Op::Delete, *b),
                    (None, None) => unreachable!("i is below the longer list's length"),
                })
                .collect()
        } else {
            let deletes = before.iter().map(|b| (Op::Delete, *b));
            deletes.chain(after.iter().map(|a| (Op::Insert, *a))).collect()
        };
        for (nth, (op, row)) in changes.into_iter().enumerate() {
            if config.acts_on(op) {
                out.push(make(config, as_of, &key_json, key_hash, nth, op, row, now_ms));
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn make(
    config: &ActionConfig,
    as_of: Tick,
    key_json: &str,
    key_hash: u64,
    nth: usize,
    op: Op,
    row: &Row,
    now_ms: i64,
) -> ActionRequest {
    let body = encode_json(row, &config.schema);
    ActionRequest {
        seq: 0,
        key: key_json.to_string(),
        op,
        as_of,
        url: fill(&config.url, &body),
        fallback_url: config.fallback_url.as_deref().map(|u| fill(u, &body)),
        body: Value::Object(body).to_string(),
        idempotency_key: format!("weir-{}-{as_of}-{key_hash:016x}-{nth}", config.name),
        accepted_ms: now_ms,
        replay: 0,
    }
}

/// `template` with each `{column}` replaced by the row's value,
/// percent-encoded (a NULL is empty). Placeholders were checked when the
/// sink was planned; an unknown one stays as it is.
pub fn fill(template: &str, row: &serde_json::Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match row.get(name) {
            Some(Value::String(s)) => percent_encode(s, &mut out),
            Some(Value::Null) => {}
            Some(v) => percent_encode(&v.to_string(), &mut out),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Everything but RFC 3986's unreserved characters, as `%XX`.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// FNV-1a, 64 bits: stable across builds, so keys stay the same.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_filled_and_encoded() {
        let row = json!({"id": 7, "name": "a b/c", "gone": null});
        let row = row.as_object().expect("an object");
        assert_eq!(
            fill("http://h/x/{id}/{name}?g={gone}", row),
            "http://h/x/7/a%20b%2Fc?g="
        );
        assert_eq!(fill("http://h/{nope}", row), "http://h/{nope}");
    }
}
