//! `GET /v1/views/{view}/changes`: a view's changes as server-sent events
//! (DESIGN.md §5). `snapshot` first (`{"as_of", "columns", "updates":
//! [{"row", "diff"}], "last"}`, in chunks of [`SNAPSHOT_CHUNK_ROWS`](super::feed::SNAPSHOT_CHUNK_ROWS) rows, the
//! last with `"last": true` and `id: as_of`), then `changes` per completed
//! time (`{"as_of", "updates"}`, `id: as_of`); `reset` when what was sent no
//! longer applies (a fresh `snapshot` follows); `error` last when the
//! stream ends. `?col=value` filters rows; `Last-Event-ID` or
//! `?from_as_of=T` resumes after `T` while the view keeps it;
//! `heartbeat_ms` (default 15000) sets the idle comments.
//!
//! A subscriber is served by its own task through a bounded buffer
//! ([`super::feed`]): one that does not keep up gets an `error` event
//! (`slow_consumer`) and its stream ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};
use weir_connectors::decode::encode_json;
use weir_operators::repr::{Diff, Row, Schema, Tick};
use weir_queries::subscribe::Event;

use super::feed::{self, Encode};
use super::{number, parse_query, Api};

const DEFAULT_HEARTBEAT_MS: u64 = 15_000;

fn updates(rows: &[(Row, Diff)], schema: &Schema) -> Vec<Value> {
    rows.iter()
        .map(|(r, d)| json!({"row": Value::Object(encode_json(r, schema)), "diff": d}))
        .collect()
}

/// One `snapshot` event of a snapshot's rows; `last` for its last chunk,
/// which alone carries the id (a resume point is a whole snapshot).
fn encode_snapshot(as_of: Tick, rows: &[(Row, Diff)], last: bool, schema: &Schema) -> (SseEvent, usize) {
    let data = json!({"as_of": as_of,
                      "columns": schema.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                      "updates": updates(rows, schema), "last": last})
    .to_string();
    let bytes = data.len();
    let mut event = SseEvent::default().event("snapshot").data(data);
    if last {
        event = event.id(as_of.to_string());
    }
    (event, bytes)
}

/// The event, and the bytes of its data.
fn encode(e: &Event, schema: &Schema) -> (SseEvent, usize) {
    let (name, id, data) = match e {
        Event::Snapshot { as_of, rows } => return encode_snapshot(*as_of, rows, true, schema),
        Event::Changes { as_of, updates: u } => (
            "changes",
            Some(as_of),
            json!({"as_of": as_of, "updates": updates(u, schema)}),
        ),
        Event::Reset { reason } => ("reset", None, json!({ "reason": reason })),
        Event::End { code, message } => ("error", None, json!({"error": {"code": code, "message": message}})),
    };
    let data = data.to_string();
    let bytes = data.len();
    let mut event = SseEvent::default().event(name).data(data);
    if let Some(id) = id {
        event = event.id(id.to_string());
    }
    (event, bytes)
}

/// Server-sent events.
struct ServerSentEvents;

impl Encode for ServerSentEvents {
    type Item = SseEvent;
    fn snapshot(&self, as_of: Tick, rows: &[(Row, Diff)], last: bool, schema: &Schema) -> (SseEvent, usize) {
        encode_snapshot(as_of, rows, last, schema)
    }
    fn event(&self, e: &Event, schema: &Schema) -> (SseEvent, usize) {
        encode(e, schema)
    }
}

pub async fn changes(
    State(api): State<Api>,
    Path(view): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = parse_query(q.as_deref());
    let mut filters = Vec::new();
    let mut from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut heartbeat = Duration::from_millis(DEFAULT_HEARTBEAT_MS);
    for (k, v) in &params {
        match k.as_str() {
            "from_as_of" => match number(k, v) {
                Ok(t) => from = Some(t),
                Err(r) => return r,
            },
            "heartbeat_ms" => match number::<u64>(k, v) {
                Ok(ms) => heartbeat = Duration::from_millis(ms.clamp(100, 600_000)),
                Err(r) => return r,
            },
            _ => filters.push((k.clone(), v.clone())),
        }
    }
    let sub = match api.engine.subscribe(&view, &filters, from) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let stream = feed::start(api.engine.clone(), sub, &view, ServerSentEvents).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response()
}
