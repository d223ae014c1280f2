//! Kafka changelog sinks: every change of a view, written to a topic.
//!
//! The dataflow hands a sink's changes to its writer one engine time at a
//! time, in time order ([`SinkMsg`]). The writer encodes them (upsert or
//! Debezium envelope, the time in a `weir.as_of` header) and writes them:
//!
//! - **at-least-once** (default): an idempotent producer; a time's records
//!   are flushed and acknowledged before the time is recorded as written.
//!   After a crash the times after the recorded one are written again.
//! - **exactly-once**: one Kafka transaction per group of times. The last
//!   time of the group is recorded as *pending* before the commit and as
//!   *committed* after it; at the next start, once `init_transactions` has
//!   settled any open transaction, the topic itself says whether the
//!   pending one committed. Readers with `isolation.level=read_committed`
//!   see every change once.
//!
//! Either way a restarted engine replays history into views whose times
//! include the recorded ones exactly (see [`SinkProgress::pins`]), so the
//! writer resumes precisely after what the topic holds.
//!
//! Errors are retried with exponential backoff, forever; they show in the
//! sink's [`SinkStatus`]. Nothing is dropped: changes wait in the queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use weir_operators::repr::{Diff, Row, Schema, Tick};

use super::feed::Feed;
use super::{by_key, Retrying, Sink, SinkMsg, SinkProgress, SinkStatus};
use crate::decode::encode_json;
use crate::error::ErrorKind;
use crate::kafka::client::{kafka_error_kind, kafka_error_retryable};
use crate::kafka::{ensure_topic, ProduceError, Producer};
use crate::meta::Meta;
use crate::rocks::StoreError;
use crate::sync::lock;

/// The header carrying the engine time of a change.
pub const AS_OF_HEADER: &str = "weir.as_of";
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Times written in one transaction at most (exactly-once).
const TIMES_PER_TRANSACTION: usize = 1000;
/// How often at-least-once progress is recorded (each record is a synced
/// write; after a crash at most this much is written again).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Why an attempt of a sink's writer failed; the writer retries it (see
/// the module doc) and shows it in [`SinkStatus::last_error`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Creating the topic, producing or committing failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// A transaction or consumer call of librdkafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The sink's progress could not be read or recorded.
    #[error(transparent)]
    Progress(#[from] StoreError),
    /// The topic's last records did not arrive in time (exactly-once, at
    /// start).
    #[error("timed out reading the end of topic {topic}")]
    EndOfTopicTimeout { topic: String },
    #[error("no producer")]
    NoProducer,
}

impl SinkError {
    /// Whose fault it is: as classified by the producer, librdkafka or the
    /// store; the broker's for a timeout; weir's for a missing producer.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SinkError::Produce(e) => e.kind(),
            SinkError::Kafka(e) => kafka_error_kind(e),
            SinkError::Progress(e) => e.kind(),
            SinkError::EndOfTopicTimeout { .. } => ErrorKind::External,
            SinkError::NoProducer => ErrorKind::Internal,
        }
    }

    /// Whether trying again may succeed with nothing changed.
    pub fn retryable(&self) -> bool {
        match self {
            SinkError::Produce(e) => e.retryable(),
            SinkError::Kafka(e) => kafka_error_retryable(e),
            SinkError::Progress(e) => e.retryable(),
            SinkError::EndOfTopicTimeout { .. } => true,
            SinkError::NoProducer => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkEnvelope {
    Upsert,
    Debezium,
}

#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub name: String,
    pub brokers: String,
    pub topic: String,
    pub envelope: SinkEnvelope,
    pub exactly_once: bool,
    /// Partitions of the topic, if weir creates it.
    pub partitions: i32,
    pub properties: Vec<(String, String)>,
    pub schema: Schema,
    /// The key columns of the view (required for the upsert envelope).
    pub key: Option<Vec<usize>>,
}

/// Starts the writer of a sink whose changes `version` sends.
pub fn start_sink(config: SinkConfig, meta: Meta, version: u64) -> std::io::Result<Sink> {
    let meta_for_forget = meta.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let status = Arc::new(SinkStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = Writer {
        progress: SinkProgress::new(meta, &config.name, &config.topic),
        config: config.clone(),
        status: Arc::clone(&status),
        stop: Arc::clone(&stop),
        rx,
        feed: Feed::new(version, Arc::clone(&status)),
        producer: None,
        last_progress: Instant::now(),
        unrecorded: None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("sink-{}", config.name))
        .spawn(move || writer.run())?;
    let progress = SinkProgress::new(meta_for_forget, &config.name, &config.topic);
    Ok(Sink {
        name: config.name.clone(),
        destination: config.topic.clone(),
        status,
        action: None,
        resend: None,
        tx,
        stop,
        threads: vec![thread],
        forget: Some(Box::new(move || progress.forget())),
    })
}

struct Writer {
    config: SinkConfig,
    progress: SinkProgress,
    status: Arc<SinkStatus>,
    stop: Arc<AtomicBool>,
    rx: Receiver<SinkMsg>,
    /// The changes to write; its `resume_after`: the times in the topic.
    feed: Feed,
    producer: Option<Producer>,
    last_progress: Instant,
    /// A written time not yet recorded (at-least-once).
    unrecorded: Option<Tick>,
}

impl Writer {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn failed(&self, e: impl std::fmt::Display) {
        self.status.errors.fetch_add(1, Ordering::Relaxed);
        self.status.failing.store(true, Ordering::SeqCst);
        *lock(&self.status.last_error) = Some(e.to_string());
    }

    /// Runs `f` until it succeeds (or the writer stops), backing off.
    fn retry<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, SinkError>) -> Option<T> {
        let (status, stop) = (Arc::clone(&self.status), Arc::clone(&self.stop));
        let mut retrying = Retrying::new(&status, &stop);
        while !retrying.stopped() {
            match f(self) {
                Ok(v) => {
                    retrying.succeeded();
                    return Some(v);
                }
                Err(e) => {
                    // A failed producer may be fenced or wedged: start anew.
                    self.producer = None;
                    if !retrying.failed(e) {
                        return None;
                    }
                }
            }
        }
        None
    }

    fn run(&mut self) {
        // Where to resume: settled before anything is written.
        let Some(resume) = self.retry(|w| w.connect()) else {
            return;
        };
        self.feed.resume_after = resume;
        if let Some(t) = resume {
            self.status.written_as_of.store(t, Ordering::SeqCst);
        }
        let mut batch: Vec<(Tick, Vec<(Row, Diff)>)> = Vec::new();
        while !self.stopped() {
            let msg = match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(msg) = msg {
                self.feed.accept(msg, &mut batch);
                // Take what else is ready, for one write.
                while batch.len() < TIMES_PER_TRANSACTION {
                    match self.rx.try_recv() {
                        Ok(m) => self.feed.accept(m, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            // Every change before it was taken in before it (one channel):
            // it is in `batch` or written.
            let frontier = self.status.frontier.load(Ordering::SeqCst);
            self.status.queued.store(batch.len() as u64, Ordering::Relaxed);
            if !batch.is_empty() {
                let times = std::mem::take(&mut batch);
                if self.retry(|w| w.write(&times)).is_none() {
                    return;
                }
                self.status.queued.store(0, Ordering::Relaxed);
            }
            self.status.settled.fetch_max(frontier, Ordering::SeqCst);
            if self.unrecorded.is_some() && self.last_progress.elapsed() >= PROGRESS_EVERY {
                self.record_progress();
            }
        }
        self.record_progress();
    }

    fn record_progress(&mut self) {
        if let Some(t) = self.unrecorded.take() {
            if let Err(e) = self.progress.put("committed", t) {
                self.failed(format!("cannot record the sink's progress: {e}"));
                self.unrecorded = Some(t);
            }
            self.last_progress = Instant::now();
        }
    }

    /// Creates the topic if missing and the producer; for exactly-once,
    /// settles an open transaction and finds the last time committed.
    fn connect(&mut self) -> Result<Option<Tick>, SinkError> {
        ensure_topic(&self.config.brokers, &self.config.topic, self.config.partitions)?;
        let committed = self.progress.get("committed")?;
        self.open_producer()?;
        if !self.config.exactly_once {
            return Ok(committed);
        }
        let pending = self.progress.get("pending")?;
        match pending {
            Some(p) if committed.is_none_or(|c| p > c) => {
                let last = last_written_as_of(&self.config)?;
                let resumed = if last.is_some_and(|l| l >= p) {
                    Some(p)
                } else {
                    committed
                };
                if let Some(t) = resumed {
                    self.progress.put("committed", t)?;
                }
                Ok(resumed)
            }
            _ => Ok(committed),
        }
    }

    /// A new producer: transactional for exactly-once (its open
    /// transactions, from a crash, settled by `init_transactions`).
    fn open_producer(&mut self) -> Result<(), SinkError> {
        let id = format!("weir-sink-{}-{}", self.config.name, self.config.topic);
        let transactional = self.config.exactly_once.then_some(id.as_str());
        let p = Producer::with_settings(&self.config.brokers, &self.config.properties, transactional)?;
        if transactional.is_some() {
            p.init_transactions(FLUSH_TIMEOUT)?;
        }
        self.producer = Some(p);
        Ok(())
    }

    /// Writes the changes of `times` (in time order).
    fn write(&mut self, times: &[(Tick, Vec<(Row, Diff)>)]) -> Result<(), SinkError> {
        if self.producer.is_none() {
            self.open_producer()?;
        }
        let Some(last) = times.last().map(|(t, _)| *t) else {
            return Ok(());
        };
        let records: Vec<(Tick, Record)> = times
            .iter()
            .flat_map(|(t, changes)| encode(&self.config, *t, changes).into_iter().map(move |r| (*t, r)))
            .collect();
        let topic = self.config.topic.clone();
        let exactly_once = self.config.exactly_once;
        let producer = self.producer.as_mut().ok_or(SinkError::NoProducer)?;
        if exactly_once {
            producer.begin_transaction()?;
        }
        let sent = (|| -> Result<(), ProduceError> {
            for (t, (key, value)) in &records {
                let headers = OwnedHeaders::new().insert(Header {
                    key: AS_OF_HEADER,
                    value: Some(t.to_string().as_bytes()),
                });
                producer.send_with_headers(&topic, key.as_deref(), value.as_deref(), Some(&headers))?;
            }
            Ok(())
        })();
        if exactly_once {
            if let Err(e) = sent {
                let _ = producer.abort_transaction(FLUSH_TIMEOUT);
                return Err(e.into());
            }
            self.progress.put("pending", last)?;
            let producer = self.producer.as_mut().ok_or(SinkError::NoProducer)?;
            if let Err(e) = producer.commit_transaction(FLUSH_TIMEOUT) {
                let _ = producer.abort_transaction(FLUSH_TIMEOUT);
                return Err(e.into());
            }
            self.progress.put("committed", last)?;
        } else {
            sent?;
            producer.flush(FLUSH_TIMEOUT)?;
            self.unrecorded = Some(last);
        }
        self.feed.resume_after = Some(last);
        self.status.written_as_of.store(last, Ordering::SeqCst);
        self.status.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The records of one time's changes: (key, value), in key order.
/// A record's key and value (`None`: no key; a tombstone).
pub type Record = (Option<Vec<u8>>, Option<Vec<u8>>);

pub fn encode(config: &SinkConfig, as_of: Tick, changes: &[(Row, Diff)]) -> Vec<Record> {
    let row_json = |r: &Row| Value::Object(encode_json(r, &config.schema));
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let Some(key_cols) = &config.key else {
        // No key: every change on its own, as often as its multiplicity.
        let mut out = Vec::new();
        for (row, diff) in changes {
            let (before, after, op) = if *diff < 0 {
                (row_json(row), Value::Null, "d")
            } else {
                (Value::Null, row_json(row), "c")
            };
            let value = json!({"before": before, "after": after, "op": op, "as_of": as_of});
            for _ in 0..diff.unsigned_abs() {
                out.push((None, Some(bytes(&value))));
            }
        }
        return out;
    };
    // By key: the rows that left it and the rows that joined it.
    let by_key = by_key(changes, Some(key_cols));
    let key_schema = Schema {
        columns: key_cols.iter().map(|&c| config.schema.columns[c].clone()).collect(),
    };
    let mut out = Vec::new();
    for (key, (before, after)) in by_key {
        let k = Some(bytes(&Value::Object(encode_json(&key, &key_schema))));
        match config.envelope {
            SinkEnvelope::Upsert => {
                if after.is_empty() {
                    out.push((k.clone(), None));
                }
                for row in after {
                    out.push((k.clone(), Some(bytes(&row_json(row)))));
                }
            }
            SinkEnvelope::Debezium => {
                let n = before.len().max(after.len());
                for i in 0..n {
                    let (b, a) = (before.get(i), after.get(i));
                    let op = match (b, a) {
                        (Some(_), Some(_)) => "u",
                        (None, _) => "c",
                        (_, None) => "d",
                    };
                    let value = json!({
                        "before": b.map_or(Value::Null, |r| row_json(r)),
                        "after": a.map_or(Value::Null, |r| row_json(r)),
                        "op": op,
                        "as_of": as_of,
                    });
                    out.push((k.clone(), Some(bytes(&value))));
                }
            }
        }
    }
    out
}

/// The largest `weir.as_of` among the committed records at the end of the
/// sink's topic: the last time a transaction wrote.
fn last_written_as_of(config: &SinkConfig) -> Result<Option<Tick>, SinkError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("weir-sink-{}-check", config.name))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?;
    let md = consumer.fetch_metadata(Some(&config.topic), FLUSH_TIMEOUT)?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == config.topic)
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(&config.topic, p, FLUSH_TIMEOUT)?;
        if high > low {
            // Transaction markers take offsets too: look a little further back.
            tpl.add_partition_offset(&config.topic, p, Offset::Offset((high - 100).max(low)))?;
            open += 1;
        }
    }
    if open == 0 {
        return Ok(None);
    }
    consumer.assign(&tpl)?;
    let mut last: Option<Tick> = None;
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while open > 0 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let t = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == AS_OF_HEADER)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<Tick>().ok())
                });
                last = last.max(t);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    if open > 0 {
        return Err(SinkError::EndOfTopicTimeout {
            topic: config.topic.clone(),
        });
    }
    Ok(last)
}
