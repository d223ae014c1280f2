//! Kafka sources: the ingest thread that copies a topic, exactly once and
//! in offset order per partition, into its mirror in the embedded log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client::{kafka_error_kind, kafka_error_retryable, Backoff, REQUEST_TIMEOUT};
use super::mirror::{Mirrored, MAX_MESSAGE_BYTES, OVERSIZED_PREVIEW_BYTES};
use crate::error::ErrorKind;
use crate::keys::read_u64;
use crate::log::{EventLog, LogError};
use crate::meta::Meta;
use crate::rocks::StoreError;
use crate::sync::lock;

/// Records buffered before they are appended to the mirror.
const FLUSH_RECORDS: usize = 20_000;
/// How long a record may wait in the buffer before it is appended, while
/// more keep coming (as soon as none is at hand, it is appended).
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// How often the high watermarks (lag) and the partitions of the topic are
/// looked up while connected.
const WATERMARKS_EVERY: Duration = Duration::from_secs(1);
const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// Records received and kept at hand per partition, for the merge.
const READY_MAX: usize = 5_000;
/// How long a partition that is behind, with nothing at hand, may hold the
/// merge back (see `IngestThread::session`).
const ALIGN_WAIT: Duration = Duration::from_millis(500);
/// How long without a record before offsets up to the high watermark that
/// brought none count as read (see `IngestThread::watermarks`).
const QUIET_AFTER: Duration = Duration::from_secs(2);
/// How often offsets are committed to the consumer group.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Timeout of the periodic high-watermark probe (it holds up copying).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an ingest session failed. The ingest tries again, with backoff, and
/// shows it in [`SourceStatus::last_error`].
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist on the broker (weir does not create source topics)")]
    NoSuchTopic(String),
    #[error("cannot write the mirror of the topic: {0}")]
    Log(#[from] LogError),
    #[error("cannot read or write the source's start offsets: {0}")]
    Store(#[from] StoreError),
    #[error("mirror record {0} is unreadable")]
    Corrupt(String),
}

impl KafkaSourceError {
    /// Whose fault it is: for librdkafka's errors the broker's, or the
    /// user's when the source's settings are refused (bad properties,
    /// credentials, ACLs, topic name); the user's for a missing topic; the
    /// store's own classification for its failures; weir's for a mirror it
    /// cannot write or read back (the mirror is the engine's own topic).
    pub fn kind(&self) -> ErrorKind {
        match self {
            KafkaSourceError::Kafka(e) => kafka_error_kind(e),
            KafkaSourceError::NoSuchTopic(_) => ErrorKind::User,
            KafkaSourceError::Log(LogError::Store(e)) | KafkaSourceError::Store(e) => e.kind(),
            KafkaSourceError::Log(_) | KafkaSourceError::Corrupt(_) => ErrorKind::Internal,
        }
    }

    /// Whether a new attempt may succeed with nothing changed: for the
    /// broker's errors and some of the store's. (The ingest retries every
    /// error, with backoff: a missing topic may be created meanwhile.)
    pub fn retryable(&self) -> bool {
        match self {
            KafkaSourceError::Kafka(e) => kafka_error_retryable(e),
            KafkaSourceError::Log(LogError::Store(e)) | KafkaSourceError::Store(e) => e.retryable(),
            KafkaSourceError::NoSuchTopic(_) | KafkaSourceError::Log(_) | KafkaSourceError::Corrupt(_) => false,
        }
    }
}

/// Where a source starts reading a partition the first time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    Earliest,
    Latest,
    Timestamp(i64),
    Offsets(BTreeMap<i32, i64>),
}

/// What a Kafka source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The table it feeds (for messages and metrics).
    pub table: String,
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub startup: Startup,
    /// Further librdkafka settings.
    pub properties: Vec<(String, String)>,
    /// The embedded log topic the records are copied into.
    pub mirror: String,
}

/// What an ingest reports, for `/readyz`, `/metrics` and job status.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Whether the broker answered the last request.
    pub connected: AtomicBool,
    /// Attempts made again after an error.
    pub retries: AtomicU64,
    /// Records copied into the mirror.
    pub ingested: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Per partition: the next offset to copy and the partition's high
    /// watermark (the offset the next record written to it will get).
    pub partitions: Mutex<BTreeMap<i32, (i64, i64)>>,
}

impl SourceStatus {
    /// Records of the topic not yet copied, per partition.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        lock(&self.partitions)
            .iter()
            .map(|(p, (next, high))| (*p, (high - next).max(0)))
            .collect()
    }

    fn failed(&self, e: impl std::fmt::Display) {
        self.connected.store(false, Ordering::SeqCst);
        *lock(&self.last_error) = Some(e.to_string());
    }
}

/// librdkafka reports connection loss through the client context.
struct Context {
    status: Arc<SourceStatus>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            self.status.failed(format!("{error}: {reason}"));
            // librdkafka reconnects by itself, with backoff.
            self.status.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {
        // Connection problems surface through `error` and the status;
        // librdkafka's own log lines would only repeat them on stderr.
    }
}

impl ConsumerContext for Context {}

/// A running ingest; stops (and waits for its thread) when dropped.
pub struct Ingest {
    pub config: SourceConfig,
    pub status: Arc<SourceStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts copying `config.topic` into `config.mirror`. `on_append` runs
/// after every append (to wake the readers of the log).
pub fn start_ingest(
    config: SourceConfig,
    log: EventLog,
    meta: Meta,
    on_append: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<Ingest> {
    let status = Arc::new(SourceStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = IngestThread {
        config: config.clone(),
        log,
        meta,
        on_append,
        status: Arc::clone(&status),
        stop: Arc::clone(&stop),
    };
    let thread = std::thread::Builder::new()
        .name(format!("kafka-{}", config.table))
        .spawn(move || worker.run())?;
    Ok(Ingest {
        config,
        status,
        stop,
        thread: Some(thread),
    })
}

struct IngestThread {
    config: SourceConfig,
    log: EventLog,
    meta: Meta,
    on_append: Arc<dyn Fn() + Send + Sync>,
    status: Arc<SourceStatus>,
    stop: Arc<AtomicBool>,
}

/// One partition being copied.
struct Part {
    /// The offset after the last record moved to `buffer`: with it, the
    /// records before it are in the mirror or about to be.
    next: i64,
    /// Encoded records waiting for the next append.
    buffer: Vec<Vec<u8>>,
    /// Records received and not yet merged into `buffer`: (timestamp,
    /// offset, encoded record).
    ready: VecDeque<(i64, i64, Vec<u8>)>,
    /// The offset after the last record received.
    seen: i64,
    /// The partition's high watermark, as last looked up.
    high: i64,
    /// The largest timestamp received.
    last_ts: i64,
}

impl IngestThread {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, waking early when stopped.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
    }

    fn run(&mut self) {
        let mut backoff = Backoff::new();
        while !self.stopped() {
            if let Err(e) = self.session(&mut backoff) {
                self.status.failed(&e);
                self.status.retries.fetch_add(1, Ordering::Relaxed);
                self.pause(backoff.next());
            }
        }
    }

    fn consumer(&self) -> Result<BaseConsumer<Context>, KafkaError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.config.brokers)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            // Only where a mirrored offset no longer exists (deleted by
            // retention): nothing older is left to read.
            .set("auto.offset.reset", "earliest")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "10000")
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.max.bytes", "52428800");
        for (k, v) in &self.config.properties {
            cfg.set(k, v);
        }
        cfg.create_with_context(Context {
            status: Arc::clone(&self.status),
        })
    }

    /// The topic's partitions, from the broker.
    fn partition_count(&self, consumer: &BaseConsumer<Context>) -> Result<i32, KafkaSourceError> {
        let md = consumer.fetch_metadata(Some(&self.config.topic), REQUEST_TIMEOUT)?;
        let topic = md
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| KafkaSourceError::NoSuchTopic(self.config.topic.clone()))?;
        Ok(topic.partitions().len() as i32)
    }

    fn start_key(&self, partition: i32) -> String {
        format!("kafka-start/{}/{partition}", self.config.mirror)
    }

    /// Where partition `p` is read from: after its last mirrored record;
    /// for an empty mirror, where the source was first started (resolved
    /// once, and kept, so that a restart before the first record does not
    /// move it); a partition found later is read from its start.
    fn start_offset(
        &self,
        consumer: &BaseConsumer<Context>,
        p: i32,
        discovered: bool,
    ) -> Result<i64, KafkaSourceError> {
        let partition = p as u32;
        let end = self.log.end_offset(&self.config.mirror, partition);
        if end > 0 {
            let rec = self
                .log
                .read(&self.config.mirror, partition, end - 1, 1)?
                .into_iter()
                .next()
                .ok_or_else(|| KafkaSourceError::Corrupt(format!("{}:{partition}", self.config.mirror)))?;
            let m = Mirrored::decode(&rec.payload).ok_or_else(|| {
                KafkaSourceError::Corrupt(format!("{}:{partition}:{}", self.config.mirror, rec.offset))
            })?;
            return Ok(m.offset + 1);
        }
        if let Some(bytes) = self.meta.get(&self.start_key(p))? {
            if let Some(o) = read_u64(&bytes) {
                return Ok(o as i64);
            }
        }
        let (low, high) = consumer.fetch_watermarks(&self.config.topic, p, REQUEST_TIMEOUT)?;
        let start = match (&self.config.startup, discovered) {
            (_, true) | (Startup::Earliest, _) => return Ok(low),
            (Startup::Latest, _) => high,
            (Startup::Offsets(given), _) => given.get(&p).copied().unwrap_or(low).clamp(low, high),
            (Startup::Timestamp(ms), _) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&self.config.topic, p, Offset::Offset(*ms))?;
                let found = consumer.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
                match found.find_partition(&self.config.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    // No record that late: start at the end.
                    _ => high,
                }
            }
        };
        self.meta.put(&self.start_key(p), &(start as u64).to_be_bytes())?;
        Ok(start)
    }

    fn assign(&self, consumer: &BaseConsumer<Context>, parts: &BTreeMap<i32, Part>) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (p, part) in parts {
            tpl.add_partition_offset(&self.config.topic, *p, Offset::Offset(part.next))?;
        }
        consumer.assign(&tpl)
    }

    /// Adds the partitions `from..count` (the mirror grows to match).
    fn add_partitions(
        &self,
        consumer: &BaseConsumer<Context>,
        parts: &mut BTreeMap<i32, Part>,
        count: i32,
        discovered: bool,
    ) -> Result<(), KafkaSourceError> {
        self.log.grow_partitions(&self.config.mirror, count as u32)?;
        for p in 0..count {
            if parts.contains_key(&p) {
                continue;
            }
            let next = self.start_offset(consumer, p, discovered)?;
            parts.insert(
                p,
                Part {
                    next,
                    buffer: Vec::new(),
                    ready: VecDeque::new(),
                    seen: next,
                    high: 0,
                    last_ts: i64::MIN,
                },
            );
        }
        let mut status = lock(&self.status.partitions);
        for (p, part) in parts.iter() {
            status.entry(*p).or_insert((part.next, part.next));
        }
        Ok(())
    }

    /// Appends every buffered record to the mirror, in one atomic write.
    fn flush(&self, parts: &mut BTreeMap<i32, Part>) -> Result<usize, KafkaSourceError> {
        let batches: Vec<(u32, &[Vec<u8>])> = parts
            .iter()
            .filter(|(_, part)| !part.buffer.is_empty())
            .map(|(p, part)| (*p as u32, part.buffer.as_slice()))
            .collect();
        let n: usize = batches.iter().map(|(_, b)| b.len()).sum();
        if n > 0 {
            self.log.append_partitions(&self.config.mirror, &batches)?;
        }
        for part in parts.values_mut() {
            part.buffer.clear();
        }
        if n > 0 {
            self.status.ingested.fetch_add(n as u64, Ordering::Relaxed);
            let mut status = lock(&self.status.partitions);
            for (p, part) in parts.iter() {
                let e = status.entry(*p).or_insert((part.next, part.next));
                e.0 = part.next;
                e.1 = e.1.max(part.next);
            }
            drop(status);
            (self.on_append)();
        }
        Ok(n)
    }

    /// Takes one record into its partition's records at hand, encoded as it
    /// is kept in the mirror.
    fn take(&self, parts: &mut BTreeMap<i32, Part>, m: &BorrowedMessage<'_>) {
        self.status.connected.store(true, Ordering::Relaxed);
        let Some(part) = parts.get_mut(&m.partition()) else {
            return;
        };
        // Already taken (a fetch may repeat after a reconnect).
        if m.offset() < part.seen {
            return;
        }
        let key = m.key();
        let value = m.payload();
        let size = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        let oversized = size > MAX_MESSAGE_BYTES;
        let cut = |b: &'_ [u8]| -> usize {
            if oversized {
                b.len().min(OVERSIZED_PREVIEW_BYTES)
            } else {
                b.len()
            }
        };
        let mut record = Vec::with_capacity(40 + size.min(OVERSIZED_PREVIEW_BYTES * 2));
        let timestamp = m.timestamp().to_millis();
        Mirrored {
            offset: m.offset(),
            timestamp,
            key: key.map(|k| &k[..cut(k)]),
            value: value.map(|v| &v[..cut(v)]),
            oversized: oversized.then_some(size as u64),
        }
        .encode(&mut record);
        let ts = timestamp.unwrap_or(i64::MIN);
        part.ready.push_back((ts, m.offset(), record));
        part.seen = m.offset() + 1;
        part.last_ts = part.last_ts.max(ts);
    }

    fn session(&mut self, backoff: &mut Backoff) -> Result<(), KafkaSourceError> {
        let consumer = Arc::new(self.consumer()?);
        let count = self.partition_count(&consumer)?;
        let mut parts: BTreeMap<i32, Part> = BTreeMap::new();
        self.add_partitions(&consumer, &mut parts, count, false)?;
        self.assign(&consumer, &parts)?;
        let mut queues = self.split(&consumer, &parts);
        self.status.connected.store(true, Ordering::SeqCst);
        backoff.reset();

        let mut probe_backoff = Backoff::new();
        let mut next_watermarks = Instant::now();
        let mut next_discovery = Instant::now() + DISCOVER_EVERY;
        let mut next_commit = Instant::now() + COMMIT_EVERY;
        let mut buffered = 0usize;
        let mut first_buffered: Option<Instant> = None;
        let mut last_record = Instant::now();
        let mut held_since: Option<Instant> = None;
        while !self.stopped() {
            let at_hand: usize = parts.values().map(|p| p.ready.len()).sum();
            // The main queue serves librdkafka's callbacks (and records
            // fetched before the partitions got queues of their own).
            let wait = if buffered > 0 || at_hand > 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(5)
            };
            let mut got = false;
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    self.take(&mut parts, &m);
                    got = true;
                }
                // Consumption errors are transient (librdkafka keeps
                // fetching and reconnecting); they are reported.
                Some(Err(e)) => self.status.failed(&e),
                None => {}
            }
            for (p, q) in &queues {
                while parts.get(p).is_some_and(|part| part.ready.len() < READY_MAX) {
                    match q.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            self.take(&mut parts, &m);
                            got = true;
                        }
                        Some(Err(e)) => {
                            self.status.failed(&e);
                            break;
                        }
                        None => break,
                    }
                }
            }
            if got {
                last_record = Instant::now();
            }
            // Partitions are merged in record-timestamp order, so that the
            // copy interleaves them as they were written: one partition
            // fetched ahead of the others would otherwise put its records
            // far ahead in event time (and pattern rules would find the
            // others' records late). A partition known to hold more than
            // it has at hand holds the merge back, for a while at most, but
            // only from a record later than its last one: its next records
            // are no earlier than that.
            while let Some(next_ts) = parts.values().filter_map(|p| p.ready.front().map(|r| r.0)).min() {
                let behind = parts
                    .values()
                    .any(|p| p.ready.is_empty() && p.seen < p.high && p.last_ts < next_ts);
                if behind {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < ALIGN_WAIT {
                        break;
                    }
                } else {
                    held_since = None;
                }
                let Some(part) = parts
                    .values_mut()
                    .filter(|p| !p.ready.is_empty())
                    .min_by_key(|p| p.ready.front().map(|r| r.0))
                else {
                    break;
                };
                if let Some((_, offset, record)) = part.ready.pop_front() {
                    part.buffer.push(record);
                    part.next = offset + 1;
                    buffered += 1;
                    first_buffered.get_or_insert_with(Instant::now);
                }
            }
            // Appended when nothing more is at hand (so a quiet topic's
            // records are in at once), else in batches while catching up.
            let drained = !got;
            let due = first_buffered.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
            if buffered >= FLUSH_RECORDS || (buffered > 0 && (due || drained)) {
                self.flush(&mut parts)?;
                buffered = 0;
                first_buffered = None;
            }
            let now = Instant::now();
            if now >= next_watermarks {
                let quiet = last_record.elapsed() >= QUIET_AFTER;
                match self.watermarks(&consumer, &mut parts, quiet) {
                    Ok(()) => {
                        self.status.connected.store(true, Ordering::SeqCst);
                        probe_backoff.reset();
                        next_watermarks = now + WATERMARKS_EVERY;
                    }
                    Err(e) => {
                        self.status.failed(&e);
                        self.status.retries.fetch_add(1, Ordering::Relaxed);
                        next_watermarks = now + probe_backoff.next();
                    }
                }
            }
            if now >= next_discovery && self.status.connected.load(Ordering::SeqCst) {
                next_discovery = now + DISCOVER_EVERY;
                if let Ok(n) = self.partition_count(&consumer) {
                    if n > parts.len() as i32 {
                        // Records at hand are fetched again after the new
                        // assignment: start from what is buffered.
                        for part in parts.values_mut() {
                            part.ready.clear();
                            part.seen = part.next;
                        }
                        self.flush(&mut parts)?;
                        buffered = 0;
                        first_buffered = None;
                        self.add_partitions(&consumer, &mut parts, n, true)?;
                        drop(queues);
                        self.assign(&consumer, &parts)?;
                        queues = self.split(&consumer, &parts);
                    }
                }
            }
            if now >= next_commit {
                next_commit = now + COMMIT_EVERY;
                let mut tpl = TopicPartitionList::new();
                for (p, part) in &parts {
                    // Nothing buffered is committed: only what is mirrored.
                    let mirrored = part.next - part.buffer.len() as i64;
                    let _ = tpl.add_partition_offset(&self.config.topic, *p, Offset::Offset(mirrored.max(0)));
                }
                // Only for monitoring: failures are not worth a retry.
                let _ = consumer.commit(&tpl, CommitMode::Async);
            }
        }
        // What is at hand but not buffered is fetched again next time.
        self.flush(&mut parts)?;
        Ok(())
    }

    /// A queue of its own for each partition (see [`IngestThread::session`]).
    fn split(
        &self,
        consumer: &Arc<BaseConsumer<Context>>,
        parts: &BTreeMap<i32, Part>,
    ) -> Vec<(i32, PartitionQueue<Context>)> {
        parts
            .keys()
            .filter_map(|p| Some((*p, consumer.split_partition_queue(&self.config.topic, *p)?)))
            .collect()
    }

    /// Looks up each partition's high watermark, for the lag.
    ///
    /// The offsets between a partition's last record and its high watermark
    /// may hold no records to read (transaction markers, aborted records):
    /// once a partition has been quiet for [`QUIET_AFTER`] with nothing
    /// buffered, the source counts as caught up with it.
    fn watermarks(
        &self,
        consumer: &BaseConsumer<Context>,
        parts: &mut BTreeMap<i32, Part>,
        quiet: bool,
    ) -> Result<(), KafkaError> {
        for (p, part) in parts.iter_mut() {
            let (_, high) = consumer.fetch_watermarks(&self.config.topic, *p, PROBE_TIMEOUT)?;
            part.high = high;
            if let Some(e) = lock(&self.status.partitions).get_mut(p) {
                e.1 = high;
                if quiet && part.buffer.is_empty() && part.ready.is_empty() {
                    e.0 = e.0.max(high);
                }
            }
        }
        Ok(())
    }
}
