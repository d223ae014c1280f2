//! A subscriber's feed: the task that takes a [`Subscription`]'s events,
//! encodes them for its connection (server-sent events, GraphQL over
//! WebSocket) and hands them over through a bounded buffer.
//!
//! The buffer holds at most [`SUBSCRIBER_BUFFER`] events and
//! [`SUBSCRIBER_BUFFER_BYTES`] bytes. A subscriber that does not take them
//! as fast gets the final `slow_consumer` error in the last slot and its
//! feed ends: the engine never holds more for it. So does one that falls
//! further behind than the view keeps its changes (2 s). At most
//! [`SNAPSHOTS`] snapshots are built at once, engine-wide: each holds its
//! view's rows until its last chunk is in its subscriber's buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, Notify, Semaphore};
use weir_operators::repr::{Diff, Row, Schema, Tick};
use weir_queries::subscribe::{Event, Subscription};

use crate::engine::Engine;

/// Events buffered per subscriber, at most (the last slot is kept for the
/// final error).
pub const SUBSCRIBER_BUFFER: usize = 256;
/// Bytes of events buffered per subscriber, at most (one event larger than
/// this, such as a big snapshot chunk, is still sent when the buffer is
/// empty).
pub const SUBSCRIBER_BUFFER_BYTES: usize = 8 << 20;

/// Rows per snapshot chunk.
pub const SNAPSHOT_CHUNK_ROWS: usize = 1000;

/// Snapshots being built and sent at once, engine-wide.
static SNAPSHOTS: Semaphore = Semaphore::const_new(4);

/// How long a snapshot chunk waits for room in a subscriber's buffer.
const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection's protocol encodes the events; each encoding comes
/// with the bytes it holds, which the buffer's bound counts.
pub trait Encode: Send + Sync + 'static {
    type Item: Send + 'static;
    /// One chunk of a snapshot at `as_of`; `last` for its last chunk.
    fn snapshot(&self, as_of: Tick, rows: &[(Row, Diff)], last: bool, schema: &Schema) -> (Self::Item, usize);
    /// Any other event (a whole [`Event::Snapshot`] is sent in chunks
    /// through [`Encode::snapshot`] instead).
    fn event(&self, e: &Event, schema: &Schema) -> (Self::Item, usize);
}

/// Starts `sub`'s feed: its events, encoded, as a stream for the
/// connection. The stream ends after the final event; dropping it ends the
/// feed. Counted in `weir_subscribers` and, when cut off,
/// `weir_slow_subscribers_dropped_total`.
pub fn start<E: Encode>(engine: Arc<Engine>, mut sub: Subscription, view: &str, enc: E) -> impl Stream<Item = E::Item> {
    let (tx, rx) = mpsc::channel::<(E::Item, usize)>(SUBSCRIBER_BUFFER);
    let buffer = Arc::new(Buffer::default());
    let metrics = engine.metrics();
    let live = metrics.subscribers.with_label_values(&[view]);
    let dropped = metrics.slow_subscribers.with_label_values(&[view]);
    let producer = Producer {
        tx,
        buffer: Arc::clone(&buffer),
        enc,
    };
    tokio::spawn(async move {
        live.inc();
        if let Err(Stop::Slow) = serve(&mut sub, &engine, &producer).await {
            dropped.inc();
        }
        live.dec();
    });
    futures_util::stream::unfold(rx, move |mut rx| {
        let buffer = Arc::clone(&buffer);
        async move {
            let (e, bytes) = rx.recv().await?;
            buffer.bytes.fetch_sub(bytes, Ordering::SeqCst);
            buffer.drained.notify_one();
            Some((e, rx))
        }
    })
}

/// What a subscriber's buffer holds, shared by its task and its connection.
#[derive(Default)]
struct Buffer {
    bytes: AtomicUsize,
    /// Notified when the connection takes an event.
    drained: Notify,
}

struct Producer<E: Encode> {
    tx: mpsc::Sender<(E::Item, usize)>,
    buffer: Arc<Buffer>,
    enc: E,
}

/// Why a subscriber's task stopped.
enum Stop {
    /// The connection went away, or the stream ended as it should.
    Done,
    /// Cut off: it did not keep up.
    Slow,
}

impl<E: Encode> Producer<E> {
    /// Hands an event over, or cuts the subscriber off (with a final error
    /// in the last slot) when its buffer is full.
    fn offer(&self, e: &Event, schema: &Schema) -> Result<(), Stop> {
        let (item, bytes) = self.enc.event(e, schema);
        let waiting = self.buffer.bytes.load(Ordering::SeqCst);
        if self.tx.capacity() <= 1 || (waiting > 0 && waiting + bytes > SUBSCRIBER_BUFFER_BYTES) {
            return Err(self.cut(waiting, schema));
        }
        self.push(item, bytes)
    }

    fn push(&self, item: E::Item, bytes: usize) -> Result<(), Stop> {
        self.buffer.bytes.fetch_add(bytes, Ordering::SeqCst);
        self.tx.try_send((item, bytes)).map_err(|_| Stop::Done)
    }

    fn cut(&self, waiting: usize, schema: &Schema) -> Stop {
        let full = Event::End {
            code: "slow_consumer",
            message: format!(
                "the subscriber did not keep up: {} events ({waiting} bytes) were waiting for it",
                SUBSCRIBER_BUFFER - self.tx.capacity()
            ),
        };
        let _ = self.tx.try_send(self.enc.event(&full, schema));
        Stop::Slow
    }

    /// Sends a snapshot in chunks of [`SNAPSHOT_CHUNK_ROWS`], each once the
    /// buffer has room for it; one that waits longer than
    /// [`SNAPSHOT_SEND_TIMEOUT`] cuts the subscriber off.
    async fn snapshot(&self, as_of: Tick, rows: &[(Row, Diff)], schema: &Schema) -> Result<(), Stop> {
        let chunks: Vec<&[(Row, Diff)]> = if rows.is_empty() {
            vec![&[]]
        } else {
            rows.chunks(SNAPSHOT_CHUNK_ROWS).collect()
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (item, bytes) = self.enc.snapshot(as_of, chunk, i + 1 == n, schema);
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
            self.push(item, bytes)?;
        }
        Ok(())
    }
}

/// Feeds one subscriber's buffer until the stream ends.
async fn serve<E: Encode>(sub: &mut Subscription, engine: &Engine, out: &Producer<E>) -> Result<(), Stop> {
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
