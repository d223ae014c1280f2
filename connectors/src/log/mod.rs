//! The embedded event log: durable, partitioned, append-only topics of raw
//! JSON payloads, stored in the [`StateStore`](crate::store::StateStore).
//!
//! Every record has a dense per-partition `offset` (0, 1, 2, …), a
//! topic-wide `seq` that strictly increases in append order across all
//! partitions of the topic and survives restarts, and the `tick` it was
//! appended at: engine time (ms) from [`clock`], never decreasing within a
//! topic. An append is one synced RocksDB `WriteBatch`: it is on disk before
//! [`EventLog::append`] returns, and readers see all of it or none of it.
//!
//! Ticks are assigned here, once, so every dataflow that reads a record
//! processes it at the same time: views of different jobs read as of the
//! same time reflect the same records (DESIGN.md §2).
//! [`EventLog::sealed`] says up to when a topic's history is final.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::ErrorKind;
use crate::keys::{read_u32, read_u64, TAG_TOPIC};
use crate::rocks::{last_before, last_with_prefix, read_once, scan, scan_with, write_durably, StoreError};
use crate::sync::lock;

mod keys;

pub use keys::valid_topic_name;
use keys::{
    check_topic_name, compacted_key, compacted_value, decode_record, partition_prefix, record_key, topic_key,
    topic_records_prefix, trimmed_key,
};

/// Partitions of a topic created implicitly by its first append.
pub const DEFAULT_PARTITIONS: u32 = 4;
/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;
/// The longest topic name, in characters.
pub const MAX_TOPIC_NAME_LEN: usize = 200;
/// Topics whose names start with this are the engine's own (Kafka sources'
/// copies): not written through the API.
pub const RESERVED_PREFIX: &str = "__";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid topic name {0:?}: use 1 to {MAX_TOPIC_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidTopicName(String),
    #[error("a topic needs 1 to {MAX_PARTITIONS} partitions, not {0}")]
    InvalidPartitionCount(u32),
    #[error("no events to append")]
    EmptyBatch,
    #[error("no topic named {0}")]
    NoSuchTopic(String),
    #[error("topic {topic} has no partition {partition} (it has {partitions})")]
    NoSuchPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogError {
    /// Whose fault it is: a bad topic name, partition count, partition or
    /// an empty batch is the caller's (`User`); a failure of the store is
    /// classified by [`StoreError::kind`] (for RocksDB I/O: `External`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::InvalidTopicName(_)
            | LogError::InvalidPartitionCount(_)
            | LogError::EmptyBatch
            | LogError::NoSuchTopic(_)
            | LogError::NoSuchPartition { .. } => ErrorKind::User,
            LogError::Store(e) => e.kind(),
        }
    }

    /// Whether the same call, made again, may succeed: only for some
    /// failures of the store ([`StoreError::retryable`]).
    pub fn retryable(&self) -> bool {
        match self {
            LogError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

/// What a topic holds (see [`EventLog::held`]).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Held {
    pub records: u64,
    /// Approximate bytes on disk (RocksDB's estimate; what is still in the
    /// memtable is not counted).
    pub bytes: u64,
    /// The largest tick of a record retention removed (0: none).
    pub trimmed_through: u64,
    /// The largest tick up to which key compaction has run (0: never):
    /// before it, only the latest record of each key is held.
    pub compacted_through: u64,
}

/// A topic and how far each of its partitions has been written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Per partition, the offset the next record will get (0 when empty).
    pub end_offsets: Vec<u64>,
}

/// Where an appended batch landed. All its records are in `partition`, with
/// offsets `first_offset..=last_offset` and seqs `first_seq..=last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub topic: String,
    pub partition: u32,
    pub first_offset: u64,
    pub last_offset: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub offset: u64,
    pub seq: u64,
    /// When it was appended (engine time, ms).
    pub tick: u64,
    pub payload: Vec<u8>,
}

/// No append in progress (see `Topic::appending`).
const NONE_APPENDING: u64 = u64::MAX;

/// Handle to the event log. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<LogInner>,
}

struct LogInner {
    db: Arc<DB>,
    /// Stamps appends and seals topics.
    clock: Clock,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Per partition, answers of [`EventLog::first_offset_from`] by tick
    /// that can no longer change (a record at or after the tick exists).
    /// Every job and worker restored from a snapshot asks about nearly the
    /// same tick: a question between two answers searches only between
    /// them.
    first_offsets: Mutex<HashMap<(String, u32), BTreeMap<u64, u64>>>,
}

/// Cached answers of `first_offset_from` kept at most per partition.
const FIRST_OFFSETS_CACHED: usize = 1024;

struct Topic {
    name: String,
    /// The partitions in use; only grows ([`EventLog::grow_partitions`]),
    /// under `next_seq`, after the new count is durable.
    partitions: AtomicU32,
    /// Per partition, the next offset; [`MAX_PARTITIONS`] slots, of which
    /// the first `partitions` are in use, so that growing a topic moves
    /// nothing. Written only by the appender holding `next_seq`, and only
    /// after its batch is durable, so a reader that stays below it reads
    /// complete batches.
    end_offsets: Box<[AtomicU64]>,
    /// Per partition, the first offset still held (retention removes a
    /// prefix of a partition, never anything in between).
    start_offsets: Box<[AtomicU64]>,
    /// The largest tick of a record retention removed (0: none): history
    /// from the tick after it on is whole.
    trimmed_through: AtomicU64,
    /// Per partition, the records key compaction removed between the start
    /// and end offsets (offsets are never reused: these are holes).
    holes: Box<[AtomicU64]>,
    /// The largest tick up to which key compaction has run (0: never).
    compacted_through: AtomicU64,
    /// Per partition, the offset key compaction has looked up to (in
    /// memory only: after a restart the first pass looks at everything).
    compacted_to: Box<[AtomicU64]>,
    /// Serialises what removes records (retention and compaction), so
    /// that the holes are counted once.
    removing: Mutex<()>,
    /// Round-robin cursor for appends that name no partition.
    next_partition: AtomicU32,
    /// The next topic-wide seq. Held for the whole of an append: appends to
    /// one topic are serialised, which keeps offsets and seqs dense and in
    /// the same order.
    next_seq: Mutex<u64>,
    /// The tick of the last append (ticks never decrease within a topic).
    last_tick: AtomicU64,
    /// Per partition, the tick of its last record (0: none). Stored before
    /// the end offset it goes with is published.
    last_ticks: Box<[AtomicU64]>,
    /// While an append is in progress: a lower bound of its tick, set before
    /// the tick is taken; [`NONE_APPENDING`] otherwise. See [`EventLog::sealed`].
    appending: AtomicU64,
}

impl Topic {
    fn new(name: &str, partitions: u32) -> Topic {
        Topic {
            name: name.to_string(),
            partitions: AtomicU32::new(partitions),
            end_offsets: (0..MAX_PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            start_offsets: (0..MAX_PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            trimmed_through: AtomicU64::new(0),
            holes: (0..MAX_PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            compacted_through: AtomicU64::new(0),
            compacted_to: (0..MAX_PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            removing: Mutex::new(()),
            next_partition: AtomicU32::new(0),
            next_seq: Mutex::new(0),
            last_tick: AtomicU64::new(0),
            last_ticks: (0..MAX_PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
            appending: AtomicU64::new(NONE_APPENDING),
        }
    }

    fn partitions(&self) -> u32 {
        self.partitions.load(Ordering::Acquire)
    }

    fn info(&self) -> TopicInfo {
        let partitions = self.partitions();
        TopicInfo {
            name: self.name.clone(),
            partitions,
            end_offsets: self.end_offsets[..partitions as usize]
                .iter()
                .map(|o| o.load(Ordering::Acquire))
                .collect(),
        }
    }

    fn check_partition(&self, partition: u32) -> Result<usize, LogError> {
        let partitions = self.partitions();
        if partition < partitions {
            Ok(partition as usize)
        } else {
            Err(LogError::NoSuchPartition {
                topic: self.name.clone(),
                partition,
                partitions,
            })
        }
    }
}

impl Topic {
    fn holes(&self) -> Vec<u64> {
        self.holes[..self.partitions() as usize]
            .iter()
            .map(|h| h.load(Ordering::Acquire))
            .collect()
    }

    fn starts(&self) -> Vec<u64> {
        self.start_offsets[..self.partitions() as usize]
            .iter()
            .map(|o| o.load(Ordering::Acquire))
            .collect()
    }
}

impl EventLog {
    /// Loads every topic and recovers its end offsets and next seq from the
    /// last record of each partition.
    pub(crate) fn recover(db: Arc<DB>, clock: Clock) -> Result<EventLog, StoreError> {
        let mut metas = Vec::new();
        scan(&db, &[TAG_TOPIC], &[TAG_TOPIC], None, |key, value| {
            let name = std::str::from_utf8(&key[1..])
                .ok()
                .filter(|name| valid_topic_name(name))
                .ok_or_else(|| StoreError::corrupt(key, "invalid topic name"))?;
            let partitions = read_u32(value)
                .filter(|p| (1..=MAX_PARTITIONS).contains(p))
                .ok_or_else(|| StoreError::corrupt(key, "invalid partition count"))?;
            metas.push((name.to_string(), partitions));
            Ok(true)
        })?;
        let mut topics = HashMap::with_capacity(metas.len());
        for (name, partitions) in metas {
            let topic = Topic::new(&name, partitions);
            let mut next_seq = 0;
            let mut last_tick = 0;
            for partition in 0..partitions {
                let prefix = partition_prefix(&name, partition);
                if let Some((key, value)) = last_with_prefix(&db, &prefix)? {
                    let last = decode_record(&key, &value)?;
                    topic.end_offsets[partition as usize].store(last.offset + 1, Ordering::Release);
                    next_seq = next_seq.max(last.seq + 1);
                    last_tick = last_tick.max(last.tick);
                    topic.last_ticks[partition as usize].store(last.tick, Ordering::Release);
                    let mut first = last.offset;
                    scan(&db, &prefix, &prefix, None, |key, value| {
                        first = decode_record(key, value)?.offset;
                        Ok(false)
                    })?;
                    topic.start_offsets[partition as usize].store(first, Ordering::Release);
                }
            }
            if let Some(v) = db.get(trimmed_key(&name))? {
                let t = read_u64(&v).ok_or_else(|| StoreError::corrupt(&trimmed_key(&name), "not 8 bytes"))?;
                topic.trimmed_through.store(t, Ordering::Release);
            }
            if let Some(v) = db.get(compacted_key(&name))? {
                let corrupt = || StoreError::corrupt(&compacted_key(&name), "not a tick, starts and hole counts");
                topic
                    .compacted_through
                    .store(read_u64(&v).ok_or_else(corrupt)?, Ordering::Release);
                for (p, part) in v[8..].chunks(16).enumerate().take(partitions as usize) {
                    let start = read_u64(part).ok_or_else(corrupt)?;
                    let holes = part.get(8..).and_then(read_u64).ok_or_else(corrupt)?;
                    topic.start_offsets[p].store(start, Ordering::Release);
                    topic.holes[p].store(holes, Ordering::Release);
                }
            }
            *lock(&topic.next_seq) = next_seq;
            topic.last_tick.store(last_tick, Ordering::SeqCst);
            topics.insert(name, Arc::new(topic));
        }
        Ok(EventLog {
            inner: Arc::new(LogInner {
                db,
                clock,
                topics: RwLock::new(topics),
                first_offsets: Mutex::default(),
            }),
        })
    }

    /// Engine time: what the next append would be stamped with, at least.
    pub fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    fn get(&self, name: &str) -> Option<Arc<Topic>> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(name).cloned()
    }

    fn get_or_create(&self, name: &str, partitions: u32) -> Result<Arc<Topic>, LogError> {
        check_topic_name(name)?;
        if let Some(topic) = self.get(name) {
            return Ok(topic);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(LogError::InvalidPartitionCount(partitions));
        }
        let mut topics = self.inner.topics.write().unwrap_or_else(|p| p.into_inner());
        // Another thread may have created it between our read and write lock.
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        let mut batch = WriteBatch::default();
        batch.put(topic_key(name), partitions.to_be_bytes());
        write_durably(&self.inner.db, batch)?;
        let topic = Arc::new(Topic::new(name, partitions));
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Grows `topic` to `partitions` partitions (creating it if missing);
    /// never shrinks it. Returns the partitions it has now. The new ones
    /// start empty; records already written keep their partitions.
    pub fn grow_partitions(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        let t = self.get_or_create(topic, partitions)?;
        if t.partitions() >= partitions {
            return Ok(t.partitions());
        }
        if partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidPartitionCount(partitions));
        }
        // Serialised with appends, so none picks a partition meanwhile.
        let _appends = lock(&t.next_seq);
        let mut batch = WriteBatch::default();
        batch.put(topic_key(topic), partitions.to_be_bytes());
        write_durably(&self.inner.db, batch)?;
        t.partitions.fetch_max(partitions, Ordering::AcqRel);
        Ok(t.partitions())
    }

    /// The partitions of `topic`: 0 when it does not exist. Cheap.
    pub fn partitions(&self, topic: &str) -> u32 {
        self.get(topic).map_or(0, |t| t.partitions())
    }

    /// Creates a topic with `partitions` partitions (1 to [`MAX_PARTITIONS`]).
    /// Idempotent: an existing topic is returned as it is, whatever
    /// `partitions` asks for.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, LogError> {
        Ok(self.get_or_create(name, partitions)?.info())
    }

    /// Appends `events` to one partition of `topic`, atomically and durably
    /// (synced to disk before this returns). The topic is created with
    /// [`DEFAULT_PARTITIONS`] if it does not exist. `partition: None` picks
    /// partitions round-robin, one per batch.
    pub fn append(&self, topic: &str, partition: Option<u32>, events: &[Vec<u8>]) -> Result<Appended, LogError> {
        check_topic_name(topic)?;
        if events.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        let t = self.get_or_create(topic, DEFAULT_PARTITIONS)?;
        let partition = partition.unwrap_or_else(|| t.next_partition.fetch_add(1, Ordering::Relaxed) % t.partitions());
        let appended = self.append_to(&t, &[(partition, events)], &mut |_| {})?;
        Ok(appended.into_iter().next().expect("one partition appended"))
    }

    /// Appends `events` as [`EventLog::append`] does, and writes what
    /// `extra` adds to the batch in the same atomic, durable write (e.g. a
    /// connector's own record of having appended them).
    pub(crate) fn append_with(
        &self,
        topic: &str,
        events: &[Vec<u8>],
        extra: &mut dyn FnMut(&mut WriteBatch),
    ) -> Result<Appended, LogError> {
        check_topic_name(topic)?;
        if events.is_empty() {
            return Err(LogError::EmptyBatch);
        }
        let t = self.get_or_create(topic, DEFAULT_PARTITIONS)?;
        let partition = t.next_partition.fetch_add(1, Ordering::Relaxed) % t.partitions();
        let appended = self.append_to(&t, &[(partition, events)], extra)?;
        Ok(appended.into_iter().next().expect("one partition appended"))
    }

    /// Appends to several partitions of `topic` (each named once) in one
    /// atomic, durable write, at one tick; an existing topic only. Where
    /// each partition's records landed, in the order given.
    pub fn append_partitions(&self, topic: &str, parts: &[(u32, &[Vec<u8>])]) -> Result<Vec<Appended>, LogError> {
        check_topic_name(topic)?;
        let t = self
            .get(topic)
            .ok_or_else(|| LogError::NoSuchTopic(topic.to_string()))?;
        self.append_to(&t, parts, &mut |_| {})
    }

    fn append_to(
        &self,
        t: &Topic,
        parts: &[(u32, &[Vec<u8>])],
        extra: &mut dyn FnMut(&mut WriteBatch),
    ) -> Result<Vec<Appended>, LogError> {
        if parts.iter().all(|(_, events)| events.is_empty()) {
            return Err(LogError::EmptyBatch);
        }
        let mut seen = Vec::with_capacity(parts.len());
        for (p, _) in parts {
            t.check_partition(*p)?;
            if seen.contains(p) {
                return Err(LogError::NoSuchPartition {
                    topic: t.name.clone(),
                    partition: *p,
                    partitions: t.partitions(),
                });
            }
            seen.push(*p);
        }
        let mut next_seq = lock(&t.next_seq);
        // Announce the append before taking its tick, so that `sealed` never
        // claims a time this batch's tick could fall below.
        t.appending.store(self.now(), Ordering::SeqCst);
        let tick = self.now().max(t.last_tick.load(Ordering::SeqCst));
        let mut seq = *next_seq;
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        let mut appended = Vec::with_capacity(parts.len());
        for (partition, events) in parts {
            if events.is_empty() {
                continue;
            }
            let first_offset = t.end_offsets[*partition as usize].load(Ordering::Acquire);
            let first_seq = seq;
            for (i, payload) in (0u64..).zip(events.iter()) {
                value.clear();
                value.extend_from_slice(&seq.to_be_bytes());
                value.extend_from_slice(&tick.to_be_bytes());
                value.extend_from_slice(payload);
                batch.put(record_key(&t.name, *partition, first_offset + i), &value);
                seq += 1;
            }
            let n = events.len() as u64;
            appended.push(Appended {
                topic: t.name.clone(),
                partition: *partition,
                first_offset,
                last_offset: first_offset + n - 1,
                first_seq,
                last_seq: seq - 1,
            });
        }
        extra(&mut batch);
        let written = write_durably(&self.inner.db, batch);
        if let Err(e) = written {
            t.appending.store(NONE_APPENDING, Ordering::SeqCst);
            return Err(e.into());
        }
        // Published only now that the batch is durable and visible.
        for a in &appended {
            t.last_ticks[a.partition as usize].store(tick, Ordering::Release);
            t.end_offsets[a.partition as usize].store(a.last_offset + 1, Ordering::Release);
        }
        t.last_tick.store(tick, Ordering::SeqCst);
        t.appending.store(NONE_APPENDING, Ordering::SeqCst);
        *next_seq = seq;
        Ok(appended)
    }

    /// Reads up to `max` records of one partition from `from_offset` on, in
    /// offset order. Never returns records at or past [`EventLog::end_offset`]
    /// as it was when the read began. Reading past the end gives an empty
    /// list; an unknown topic or partition is an error.
    pub fn read(&self, topic: &str, partition: u32, from_offset: u64, max: usize) -> Result<Vec<LogRecord>, LogError> {
        check_topic_name(topic)?;
        let t = self
            .get(topic)
            .ok_or_else(|| LogError::NoSuchTopic(topic.to_string()))?;
        let index = t.check_partition(partition)?;
        let end = t.end_offsets[index].load(Ordering::Acquire);
        if from_offset >= end || max == 0 {
            return Ok(Vec::new());
        }
        let available = usize::try_from(end - from_offset).unwrap_or(usize::MAX);
        let mut records = Vec::with_capacity(max.min(available).min(4096));
        let prefix = partition_prefix(topic, partition);
        let start = record_key(topic, partition, from_offset);
        let stop = record_key(topic, partition, end);
        scan_with(
            &self.inner.db,
            read_once(),
            &prefix,
            &start,
            Some(stop),
            |key, value| {
                records.push(decode_record(key, value)?);
                Ok(records.len() < max)
            },
        )?;
        Ok(records)
    }

    /// A time up to which `topic`'s history is final: every record appended
    /// from now on gets a tick at or after it. Read it *before* the end
    /// offsets: records up to those offsets, plus later ones with ticks at
    /// or after the returned time, are then all there will be before it.
    ///
    /// # Why it holds
    /// Appends to a topic are serialised; each stores a lower bound of its
    /// tick in `appending` before taking the tick, and resets it only after
    /// publishing its end offset. If this read sees the reset, the batch is
    /// already visible; if it sees the bound, the result is at most the
    /// bound; if the append had not announced itself yet, its tick is taken
    /// later from the same never-decreasing clock, so it is at least `now`.
    pub fn sealed(&self, topic: &str) -> u64 {
        let now = self.now();
        match self.get(topic) {
            Some(t) => now.min(t.appending.load(Ordering::SeqCst)),
            None => now,
        }
    }

    /// The tick the record at `offset` of a partition was appended at;
    /// `None` while the log has no such record.
    pub fn appended_at(&self, topic: &str, partition: u32, offset: u64) -> Option<u64> {
        Some(self.read(topic, partition, offset, 1).ok()?.first()?.tick)
    }

    /// The first offset of a partition whose record was appended at or
    /// after `tick` (its end when none is): records come in tick order, so
    /// a binary search reads a handful of records instead of the whole
    /// history, and none when the tick is past the partition's last record
    /// (a restart from a snapshot of a log that has not grown since).
    pub fn first_offset_from(&self, topic: &str, partition: u32, tick: u64) -> u64 {
        let start = self.start_offset(topic, partition);
        if tick == 0 {
            return start;
        }
        let Some(t) = self.get(topic).filter(|t| partition < t.partitions()) else {
            return 0;
        };
        // The end before the last tick: that tick is then at least as new.
        let end = t.end_offsets[partition as usize].load(Ordering::Acquire);
        if end <= start || t.last_ticks[partition as usize].load(Ordering::Acquire) < tick {
            return end.max(start);
        }
        let key = (topic.to_string(), partition);
        let (mut lo, mut hi) = (start, end);
        if let Some(answers) = lock(&self.inner.first_offsets).get(&key) {
            if let Some(&o) = answers.get(&tick) {
                return o.max(start);
            }
            if let Some((_, &o)) = answers.range(..tick).next_back() {
                lo = lo.max(o);
            }
            if let Some((_, &o)) = answers.range(tick..).next() {
                hi = hi.min(o).max(lo);
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.appended_at(topic, partition, mid) {
                Some(t) if t < tick => lo = mid + 1,
                _ => hi = mid,
            }
        }
        // Past the end, a later append may still come before the answer.
        if lo < end {
            let mut cache = lock(&self.inner.first_offsets);
            let answers = cache.entry(key).or_default();
            if answers.len() >= FIRST_OFFSETS_CACHED {
                answers.clear();
            }
            answers.insert(tick, lo);
        }
        lo
    }

    /// The offset the next record of this partition will get: 0 for an
    /// empty or unknown partition. Cheap (an atomic load).
    pub fn end_offset(&self, topic: &str, partition: u32) -> u64 {
        self.get(topic)
            .filter(|t| partition < t.partitions())
            .and_then(|t| t.end_offsets.get(partition as usize).map(|o| o.load(Ordering::Acquire)))
            .unwrap_or(0)
    }

    /// The first offset of a partition still held (0 unless retention
    /// removed records).
    pub fn start_offset(&self, topic: &str, partition: u32) -> u64 {
        self.get(topic)
            .filter(|t| partition < t.partitions())
            .and_then(|t| {
                t.start_offsets
                    .get(partition as usize)
                    .map(|o| o.load(Ordering::Acquire))
            })
            .unwrap_or(0)
    }

    /// What `topic` holds: records, approximate bytes on disk, and the
    /// largest tick retention removed (0: the whole history is held).
    pub fn held(&self, topic: &str) -> Held {
        let Some(t) = self.get(topic) else {
            return Held::default();
        };
        let partitions = t.partitions() as usize;
        let records = (0..partitions)
            .map(|p| {
                let span = t.end_offsets[p].load(Ordering::Acquire) - t.start_offsets[p].load(Ordering::Acquire);
                span.saturating_sub(t.holes[p].load(Ordering::Acquire))
            })
            .sum();
        let prefix = topic_records_prefix(topic);
        let end = crate::rocks::prefix_end(&prefix).unwrap_or_default();
        let range = rocksdb::Range::new(&prefix, &end);
        let bytes = self
            .inner
            .db
            .get_approximate_sizes(&[range])
            .first()
            .copied()
            .unwrap_or(0);
        Held {
            records,
            bytes,
            trimmed_through: t.trimmed_through.load(Ordering::Acquire),
            compacted_through: t.compacted_through.load(Ordering::Acquire),
        }
    }

    /// Removes, in each partition `p`, the records before offset
    /// `keep_from[p]` (a prefix: offsets of the rest do not change), and
    /// records durably the largest tick removed. A partition's last record
    /// always stays: its offset and seq are what a restart resumes from.
    /// Returns the records removed.
    ///
    /// # Contract
    /// The caller has checked that no reader still needs them (DESIGN.md
    /// §4: never below a snapshot a dataflow needs).
    pub fn trim(&self, topic: &str, keep_from: &[u64]) -> Result<u64, LogError> {
        let t = self
            .get(topic)
            .ok_or_else(|| LogError::NoSuchTopic(topic.to_string()))?;
        let _removing = lock(&t.removing);
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        let mut through = t.trimmed_through.load(Ordering::Acquire);
        let mut moved = Vec::new();
        for (p, &keep) in keep_from.iter().enumerate().take(t.partitions() as usize) {
            let start = t.start_offsets[p].load(Ordering::Acquire);
            let keep = keep.min(t.end_offsets[p].load(Ordering::Acquire).saturating_sub(1));
            if keep <= start {
                continue;
            }
            // Compaction left holes: count what is really there.
            let holes = t.holes[p].load(Ordering::Acquire);
            let there = if holes == 0 {
                keep - start
            } else {
                let prefix = partition_prefix(topic, p as u32);
                let mut n = 0;
                let stop = record_key(topic, p as u32, keep);
                scan(
                    &self.inner.db,
                    &prefix,
                    &record_key(topic, p as u32, start),
                    Some(stop),
                    |_, _| {
                        n += 1;
                        Ok(true)
                    },
                )?;
                n
            };
            if let Some(tick) = self.tick_before(topic, p as u32, start, keep)? {
                through = through.max(tick);
            }
            batch.delete_range(record_key(topic, p as u32, start), record_key(topic, p as u32, keep));
            removed += there;
            moved.push((p, keep, holes.saturating_sub(keep - start - there)));
        }
        if moved.is_empty() {
            return Ok(0);
        }
        batch.put(trimmed_key(topic), through.to_be_bytes());
        let (mut starts, mut holes) = (t.starts(), t.holes());
        for &(p, keep, h) in &moved {
            starts[p] = keep;
            holes[p] = h;
        }
        let compacted = t.compacted_through.load(Ordering::Acquire);
        batch.put(compacted_key(topic), compacted_value(compacted, &starts, &holes));
        write_durably(&self.inner.db, batch)?;
        for (p, keep, h) in moved {
            t.holes[p].store(h, Ordering::Release);
            t.start_offsets[p].store(keep, Ordering::Release);
        }
        t.trimmed_through.store(through, Ordering::Release);
        Ok(removed)
    }

    /// The tick of the last record of a partition before offset `before`
    /// and at or after `from` (compaction may have removed `before - 1`).
    fn tick_before(&self, topic: &str, partition: u32, from: u64, before: u64) -> Result<Option<u64>, LogError> {
        let prefix = partition_prefix(topic, partition);
        let upper = record_key(topic, partition, before);
        Ok(match last_before(&self.inner.db, &prefix, &upper)? {
            Some((key, value)) => Some(decode_record(&key, &value)?)
                .filter(|rec| rec.offset >= from)
                .map(|rec| rec.tick),
            None => None,
        })
    }

    /// Per partition, the offset key compaction has looked up to in this
    /// process (0: not yet).
    pub fn compacted_to(&self, topic: &str) -> Vec<u64> {
        self.get(topic)
            .map(|t| {
                t.compacted_to[..t.partitions() as usize]
                    .iter()
                    .map(|o| o.load(Ordering::Acquire))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the records at `offsets` (partition, offset) that key
    /// compaction found superseded, in one synced batch, and records that
    /// compaction has looked at each partition up to `looked_to` and at
    /// every record up to tick `through`. Returns the records removed.
    ///
    /// # Contract
    /// The caller removes only records that exist and that no reader still
    /// needs (DESIGN.md §4); a partition's last record is kept regardless.
    pub fn remove_compacted(
        &self,
        topic: &str,
        offsets: &[(u32, u64)],
        looked_to: &[u64],
        through: u64,
    ) -> Result<u64, LogError> {
        let t = self
            .get(topic)
            .ok_or_else(|| LogError::NoSuchTopic(topic.to_string()))?;
        let _removing = lock(&t.removing);
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        let mut holes = t.holes();
        for &(p, offset) in offsets {
            let index = t.check_partition(p)?;
            // Trimmed meanwhile, or the last record: not this call's to remove.
            let start = t.start_offsets[index].load(Ordering::Acquire);
            let end = t.end_offsets[index].load(Ordering::Acquire);
            if offset < start || offset + 1 >= end {
                continue;
            }
            batch.delete(record_key(topic, p, offset));
            holes[index] += 1;
            removed += 1;
        }
        let through = through.max(t.compacted_through.load(Ordering::Acquire));
        batch.put(compacted_key(topic), compacted_value(through, &t.starts(), &holes));
        write_durably(&self.inner.db, batch)?;
        for (p, h) in holes.iter().enumerate() {
            t.holes[p].store(*h, Ordering::Release);
        }
        t.compacted_through.store(through, Ordering::Release);
        for (p, &to) in looked_to.iter().enumerate().take(t.partitions() as usize) {
            t.compacted_to[p].store(to, Ordering::Release);
        }
        Ok(removed)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let topics = self.inner.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut infos: Vec<TopicInfo> = topics.values().map(|t| t.info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One topic, if it exists.
    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.get(name).map(|t| t.info())
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("topics", &self.topics()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_offset_from_equals_a_scan_whatever_was_asked_before() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(0);
        let store = crate::store::StateStore::open_with_clock(dir.path(), Clock::Manual(clock.clone())).expect("open");
        let log = store.log();
        log.create_topic("t", 2).expect("topic");
        // Ticks 10, 20, …, several records per tick, some ticks skipped.
        for i in 1..=60u64 {
            if i % 7 == 0 {
                continue;
            }
            clock.set(i * 10);
            let n = (i % 3 + 1) as usize;
            log.append("t", Some((i % 2) as u32), &vec![b"{}".to_vec(); n])
                .expect("append");
        }
        let scan = |p: u32, tick: u64| -> u64 {
            let recs = log.read("t", p, 0, usize::MAX).expect("read");
            recs.iter()
                .find(|r| r.tick >= tick)
                .map_or(log.end_offset("t", p), |r| r.offset)
        };
        // Questions in an order that leaves answers on both sides of later ones.
        let mut x: u64 = 3;
        for _ in 0..400 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let tick = (x >> 33) % 640;
            let p = ((x >> 20) % 2) as u32;
            assert_eq!(
                log.first_offset_from("t", p, tick),
                scan(p, tick),
                "tick {tick} partition {p}"
            );
        }
        // Past the last record: the end, without a search.
        assert_eq!(log.first_offset_from("t", 0, 10_000), log.end_offset("t", 0));
    }
}
