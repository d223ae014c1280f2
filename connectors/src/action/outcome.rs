//! How a request ended, and the records it leaves: an event on the
//! response topic, one on the fallback topic, a dead letter.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::request::ActionRequest;
use crate::dead_letters::DeadLetter;

/// The most of a response body kept (in events and dead letters).
pub const MAX_BODY: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// The sink's URL answered 2xx.
    Delivered,
    /// The sink's URL failed for good; its `fallback.url` answered 2xx.
    FallbackDelivered,
    /// Nothing took it: it is in the dead letters.
    Failed,
}

impl Result {
    pub fn as_str(self) -> &'static str {
        match self {
            Result::Delivered => "delivered",
            Result::FallbackDelivered => "fallback_delivered",
            Result::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub request: ActionRequest,
    pub result: Result,
    /// The last answer's status (none: no answer, e.g. refused or timed out).
    pub status: Option<u16>,
    /// The last answer's body, at most [`MAX_BODY`] bytes.
    pub response: String,
    /// Attempts in all, the fallback URL's included.
    pub attempts: u32,
    /// From taking the change in to the final answer.
    pub latency_ms: u64,
    /// Why the sink's URL failed for good (none when delivered).
    pub reason: Option<String>,
    pub finished_ms: i64,
    /// Its event is on the response topic already (a restart resumes
    /// recording it after that step).
    #[serde(default)]
    pub on_response_topic: bool,
}

impl Outcome {
    /// Whether the sink's own URL failed for good (what a fallback is for).
    pub fn primary_failed(&self) -> bool {
        self.result != Result::Delivered
    }

    fn fields(&self, sink: &str) -> serde_json::Map<String, Value> {
        let r = &self.request;
        let as_json = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()));
        let row = as_json(&r.body);
        let value = json!({
            "sink": sink,
            "key": as_json(&r.key),
            "op": r.op.as_str(),
            "as_of": r.as_of,
            "idempotency_key": r.idempotency_key,
            "url": r.url,
            "row": row.clone(),
            "outcome": self.result.as_str(),
            "ok": self.result != Result::Failed,
            "status": self.status,
            "response": if self.response.is_empty() { Value::Null } else { as_json(&self.response) },
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "at_ms": self.finished_ms,
        });
        let mut fields = match value {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        // The row's columns at the top too (where no outcome field has the
        // name), so a table over the topic reads them as columns.
        if let Value::Object(row) = row {
            for (k, v) in row {
                fields.entry(k).or_insert(v);
            }
        }
        fields
    }

    /// The event of `response.topic` and `fallback.topic`.
    pub fn event(&self, sink: &str) -> Vec<u8> {
        serde_json::to_vec(&Value::Object(self.fields(sink))).unwrap_or_default()
    }

    /// The dead letter of a request nothing took: the request, the last
    /// answer and why.
    pub fn dead_letter(&self, sink: &str) -> DeadLetter {
        let r = &self.request;
        let payload = json!({
            "kind": "action",
            "sink": sink,
            "request": r,
            "status": self.status,
            "response": self.response,
            "attempts": self.attempts,
        });
        DeadLetter {
            // A replay that fails again is a letter of its own.
            id: match r.replay {
                0 => format!("action/{sink}/{}", r.idempotency_key),
                n => format!("action/{sink}/{}/replay-{n}", r.idempotency_key),
            },
            source: sink.to_string(),
            position: None,
            payload: payload.to_string(),
            reason: self.reason.clone().unwrap_or_else(|| "failed".into()),
            at_ms: self.finished_ms,

            replays: Vec::new(),
        }
    }
}
