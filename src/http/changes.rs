//! `GET /v1/views/{view}/changes`: a view's changes as server-sent events
//! (DESIGN.md §5). `snapshot` first (`{"as_of", "columns", "updates":
//! [{"row", "diff"}]}`), then `changes` per completed time (`{"as_of",
//! "updates"}`), each with `id: as_of`; `reset` when what was sent no
//! longer applies (a fresh `snapshot` follows); `error` last when the
//! stream ends. `?col=value` filters rows; `Last-Event-ID` or
//! `?from_as_of=T` resumes after `T` while the view keeps it;
//! `heartbeat_ms` (default 15000) sets the idle comments.
//!
//! A subscriber is served by its own task, which hands events to the
//! connection through a buffer of at most [`SUBSCRIBER_BUFFER`] events and
//! [`SUBSCRIBER_BUFFER_BYTES`] bytes. One that does not take them as fast
//! gets an `error` event (`slow_consumer`) in the last slot and its stream
//! ends: the engine never holds more for it. So does one that falls
//! further behind than the view keeps its changes (2 s).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use weir_connectors::decode::encode_json;
use weir_operators::repr::{Diff, Row, Schema};
use weir_queries::subscribe::Event;

use super::{number, parse_query, Api};

/// Events buffered per subscriber, at most (the last slot is kept for the
/// final error).
pub const SUBSCRIBER_BUFFER: usize = 256;
/// Bytes of events buffered per subscriber, at most (one event larger than
/// this, such as a big snapshot, is still sent when the buffer is empty).
pub const SUBSCRIBER_BUFFER_BYTES: usize = 8 << 20;

const DEFAULT_HEARTBEAT_MS: u64 = 15_000;

fn updates(rows: &[(Row, Diff)], schema: &Schema) -> Vec<Value> {
    rows.iter()
        .map(|(r, d)| json!({"row": Value::Object(encode_json(r, schema)), "diff": d}))
        .collect()
}

/// The event, and the bytes of its data.
fn encode(e: &Event, schema: &Schema) -> (SseEvent, usize) {
    let (name, id, data) = match e {
        Event::Snapshot { as_of, rows } => (
            "snapshot",
            Some(as_of),
            json!({"as_of": as_of,
                   "columns": schema.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                   "updates": updates(rows, schema)}),
        ),
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
    let mut sub = match api.engine.subscribe(&view, &filters, from) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<(SseEvent, usize)>(SUBSCRIBER_BUFFER);
    // Bytes handed to the buffer and not yet taken by the connection.
    let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let taken = std::sync::Arc::clone(&queued);
    let engine = api.engine.clone();
    let metrics = engine.metrics();
    let live = metrics.subscribers.with_label_values(&[&view]);
    let dropped = metrics.slow_subscribers.with_label_values(&[&view]);
    tokio::spawn(async move {
        live.inc();
        loop {
            let e = tokio::select! {
                e = sub.next(&*engine) => e,
                _ = tx.closed() => break,
            };
            let end = matches!(e, Event::End { .. });
            if matches!(
                e,
                Event::End {
                    code: "slow_consumer",
                    ..
                }
            ) {
                dropped.inc();
            }
            let (event, bytes) = encode(&e, sub.schema());
            let waiting = queued.load(Ordering::SeqCst);
            if !end && (tx.capacity() <= 1 || (waiting > 0 && waiting + bytes > SUBSCRIBER_BUFFER_BYTES)) {
                dropped.inc();
                let full = Event::End {
                    code: "slow_consumer",
                    message: format!(
                        "the subscriber did not keep up: {} events ({waiting} bytes) were waiting for it",
                        SUBSCRIBER_BUFFER - tx.capacity()
                    ),
                };
                let _ = tx.try_send(encode(&full, sub.schema()));
                break;
            }
            queued.fetch_add(bytes, Ordering::SeqCst);
            if tx.try_send((event, bytes)).is_err() || end {
                break;
            }
        }
        live.dec();
    });
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let taken = std::sync::Arc::clone(&taken);
        async move {
            let (e, bytes) = rx.recv().await?;
            taken.fetch_sub(bytes, Ordering::SeqCst);
            Some((Ok::<_, Infallible>(e), rx))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response()
}
