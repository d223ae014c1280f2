//! `GET /v1/views/{view}/changes`: a view's changes as server-sent events
//! (DESIGN.md §5). `snapshot` first (`{"as_of", "columns", "updates":
//! [{"row", "diff"}], "last"}`, in chunks of [`SNAPSHOT_CHUNK_ROWS`] rows, the
//! last with `"last": true` and `id: as_of`), then `changes` per completed
//! time (`{"as_of", "updates"}`, `id: as_of`); `reset` when what was sent no
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
//! At most four snapshots are built at once, engine-wide: each holds its
//! view's rows until its last chunk is in its subscriber's buffer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify, Semaphore};
use weir_connectors::decode::encode_json;
use weir_operators::repr::{Diff, Row, Schema};
use weir_queries::subscribe::{Event, Subscription};

use crate::engine::Engine;

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

/// One `snapshot` event of a snapshot's rows; `last` for its last chunk,
/// which alone carries the id (a resume point is a whole snapshot).
fn encode_snapshot(as_of: u64, rows: &[(Row, Diff)], last: bool, schema: &Schema) -> (SseEvent, usize) {
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
    let buffer = Arc::new(Buffer::default());
    let engine = api.engine.clone();
    let metrics = engine.metrics();
    let live = metrics.subscribers.with_label_values(&[&view]);
    let dropped = metrics.slow_subscribers.with_label_values(&[&view]);
    let producer = Producer {
        tx,
        buffer: Arc::clone(&buffer),
    };
    tokio::spawn(async move {
        live.inc();
        if let Err(Stop::Slow) = serve(&mut sub, &engine, &producer).await {
            dropped.inc();
        }
        live.dec();
    });
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let buffer = Arc::clone(&buffer);
        async move {
            let (e, bytes) = rx.recv().await?;
            buffer.bytes.fetch_sub(bytes, Ordering::SeqCst);
            buffer.drained.notify_one();
            Some((Ok::<_, Infallible>(e), rx))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response()
}

/// Snapshots being built and sent at once, engine-wide: each holds its
/// view's rows in memory until its last chunk is in the subscriber's
/// buffer.
static SNAPSHOTS: Semaphore = Semaphore::const_new(4);

/// Rows per `snapshot` event.
pub const SNAPSHOT_CHUNK_ROWS: usize = 1000;

/// How long a snapshot chunk waits for room in a subscriber's buffer.
const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a subscriber's buffer holds, shared by its task and its connection.
#[derive(Default)]
struct Buffer {
    bytes: AtomicUsize,
    /// Notified when the connection takes an event.
    drained: Notify,
}

struct Producer {
    tx: mpsc::Sender<(SseEvent, usize)>,
    buffer: Arc<Buffer>,
}

/// Why a subscriber's task stopped.
enum Stop {
    /// The connection went away, or the stream ended as it should.
    Done,
    /// Cut off: it did not keep up.
    Slow,
}

impl Producer {
    /// Hands an event over, or cuts the subscriber off (with a final error
    /// in the last slot) when its buffer is full.
    fn offer(&self, e: &Event, schema: &Schema) -> Result<(), Stop> {
        let (event, bytes) = encode(e, schema);
        let waiting = self.buffer.bytes.load(Ordering::SeqCst);
        if self.tx.capacity() <= 1 || (waiting > 0 && waiting + bytes > SUBSCRIBER_BUFFER_BYTES) {
            return Err(self.cut(waiting, schema));
        }
        self.push(event, bytes)
    }

    fn push(&self, event: SseEvent, bytes: usize) -> Result<(), Stop> {
        self.buffer.bytes.fetch_add(bytes, Ordering::SeqCst);
        self.tx.try_send((event, bytes)).map_err(|_| Stop::Done)
    }

    fn cut(&self, waiting: usize, schema: &Schema) -> Stop {
        let full = Event::End {
            code: "slow_consumer",
            message: format!(
                "the subscriber did not keep up: {} events ({waiting} bytes) were waiting for it",
                SUBSCRIBER_BUFFER - self.tx.capacity()
            ),
        };
        let _ = self.tx.try_send(encode(&full, schema));
        Stop::Slow
    }

    /// Sends a snapshot in chunks of [`SNAPSHOT_CHUNK_ROWS`], each once the
    /// buffer has room for it; one that waits longer than
    /// [`SNAPSHOT_SEND_TIMEOUT`] cuts the subscriber off.
    async fn snapshot(&self, as_of: u64, rows: &[(Row, Diff)], schema: &Schema) -> Result<(), Stop> {
        let chunks: Vec<&[(Row, Diff)]> = if rows.is_empty() {
            vec![&[]]
        } else {
            rows.chunks(SNAPSHOT_CHUNK_ROWS).collect()
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (event, bytes) = encode_snapshot(as_of, chunk, i + 1 == n, schema);
            loop {
                let waiting = self.buffer.bytes.load(Ordering::SeqCst);
                if self.tx.capacity() > 1 && (waiting == 0 || waiting + bytes <= SUBSCRIBER_BUFFER_BYTES) {
                    break;
                }
                let drained = self.buffer.drained.notified();
                if tokio::time::timeout(SNAPSHOT_SEND_TIMEOUT, drained).await.is_err() || self.tx.is_closed() {
                    return Err(self.cut(waiting, schema));
                }
            }
            self.push(event, bytes)?;
        }
        Ok(())
    }
}

/// Feeds one subscriber's buffer until the stream ends.
async fn serve(sub: &mut Subscription, engine: &Engine, out: &Producer) -> Result<(), Stop> {
    loop {
        // A snapshot waits for one of the engine's snapshot permits.
        let permit = if sub.wants_snapshot() {
            tokio::select! {
                p = SNAPSHOTS.acquire() => p.ok(),
                _ = out.tx.closed() => return Err(Stop::Done),
            }
        } else {
            None
        };
        let e = tokio::select! {
            e = sub.next(engine) => e,
            _ = out.tx.closed() => return Err(Stop::Done),
        };
        match &e {
            Event::Snapshot { as_of, rows } => out.snapshot(*as_of, rows, sub.schema()).await?,
            Event::End { code, .. } => {
                let _ = out.offer(&e, sub.schema());
                return if *code == "slow_consumer" {
                    Err(Stop::Slow)
                } else {
                    Ok(())
                };
            }
            _ => out.offer(&e, sub.schema())?,
        }
        drop(permit);
    }
}
