//! The RocksDB state store: one database per engine, shared by the event
//! log, the catalog and the dead-letter list.
//!
//! # Key layout
//!
//! Everything lives in RocksDB's default column family. The first byte of a
//! key names the record kind; integers are big-endian so that RocksDB's
//! bytewise order is numeric order. Topic names never contain `0x00` (see
//! [`crate::log::valid_topic_name`]), so a `0x00` after the name ends it and
//! keeps one topic's keys contiguous and sorted by name.
//!
//! | key | value | owner |
//! |---|---|---|
//! | `V` | format version, `u32` BE | [`StateStore`] |
//! | `T` topic | partition count, `u32` BE | [`EventLog`] |
//! | `L` topic `0x00` partition `u32` offset `u64` | seq `u64` BE, tick `u64` BE, then the payload | [`EventLog`] |
//! | `J` job name (UTF-8) | creation number `u64` BE, then the spec bytes | [`Catalog`] |
//! | `D` number `u64` | a [`DeadLetter`](crate::dead_letters::DeadLetter) as JSON | [`DeadLetters`] |
//! | `I` dead-letter id (UTF-8) | its number `u64` BE | [`DeadLetters`] |
//! | `C` source (UTF-8) | dead letters recorded for that source, `u64` BE | [`DeadLetters`] |

use crate::clock::Clock;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};

use crate::catalog::Catalog;
use crate::dead_letters::DeadLetters;
use crate::log::EventLog;

/// Version of the key layout above. Bump it when the layout changes
/// incompatibly; [`StateStore::open`] refuses a database of another version
/// rather than misreading it.
pub const FORMAT_VERSION: u32 = 2;

pub(crate) const TAG_VERSION: u8 = b'V';
pub(crate) const TAG_TOPIC: u8 = b'T';
pub(crate) const TAG_LOG: u8 = b'L';
pub(crate) const TAG_JOB: u8 = b'J';
pub(crate) const TAG_DEAD_LETTER: u8 = b'D';
pub(crate) const TAG_DEAD_LETTER_ID: u8 = b'I';
pub(crate) const TAG_DEAD_LETTER_COUNT: u8 = b'C';
pub(crate) const TAG_META: u8 = b'M';

/// Errors of the state store itself: RocksDB failures and records that
/// cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {}: {source}", path.display())]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("state store at {} has format version {found}, this build reads version {expected}", path.display())]
    UnsupportedVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("state store I/O: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt state store record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("cannot encode {what}: {reason}")]
    Encode { what: String, reason: String },
}

impl StoreError {
    pub(crate) fn corrupt(key: &[u8], reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.into(),
        }
    }
}

/// The engine's one RocksDB database. Cheap to clone (an `Arc` inside),
/// `Send + Sync`; the database closes when the last clone and the last view
/// handed out by it are dropped.
#[derive(Clone)]
pub struct StateStore {
    path: PathBuf,
    db: Arc<DB>,
    log: EventLog,
    catalog: Catalog,
    dead_letters: DeadLetters,
}

/// The RocksDB block cache (data, index and filter blocks).
const BLOCK_CACHE_BYTES: usize = 32 << 20;

impl StateStore {
    /// Opens the database at `path`, creating the directory and the database
    /// if missing, and recovers the in-memory state of every view (end
    /// offsets, next sequence numbers, catalog, dead-letter counts).
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        Self::open_with_clock(path, Clock::Wall)
    }

    /// [`StateStore::open`] with the log stamping appends by `clock`.
    pub fn open_with_clock(path: &Path, clock: Clock) -> Result<StateStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        // Memory for reading the log stays fixed however long it grows: data
        // blocks, and the index and filter blocks of every file (otherwise
        // held outside any cache, growing with the log), share one cache.
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        check_version(&db, path)?;
        let db = Arc::new(db);
        Ok(StateStore {
            path: path.to_path_buf(),
            log: EventLog::recover(db.clone(), clock)?,
            catalog: Catalog::recover(db.clone())?,
            dead_letters: DeadLetters::recover(db.clone())?,
            db,
        })
    }

    /// Stops RocksDB's background flushes and compactions and waits for
    /// those running, before the process exits: a process that ends while
    /// they run can crash in RocksDB's teardown. Every write already made is
    /// durable (writes are synced); the store must not be written after this.
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The embedded event log.
    pub fn log(&self) -> EventLog {
        self.log.clone()
    }

    /// The job catalog.
    pub fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    /// The dead-letter list.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead_letters.clone()
    }

    /// Small durable settings of the connectors (e.g. where a Kafka source
    /// started), by key.
    pub fn meta(&self) -> Meta {
        Meta { db: self.db.clone() }
    }
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.path).finish()
    }
}

fn check_version(db: &DB, path: &Path) -> Result<(), StoreError> {
    match db.get([TAG_VERSION])? {
        Some(bytes) => {
            let found =
                read_u32(&bytes).ok_or_else(|| StoreError::corrupt(&[TAG_VERSION], "version is not 4 bytes"))?;
            if found != FORMAT_VERSION {
                return Err(StoreError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            Ok(())
        }
        None => {
            let mut batch = WriteBatch::default();
            batch.put([TAG_VERSION], FORMAT_VERSION.to_be_bytes());
            write_durably(db, batch)
        }
    }
}

/// Writes `batch` atomically and waits until it is on disk (fsync), so it
/// survives a crash of the process or the machine once this returns.
pub(crate) fn write_durably(db: &DB, batch: WriteBatch) -> Result<(), StoreError> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;
    Ok(())
}

/// Visits every record whose key starts with `prefix`, in key order, from
/// `start` (which must itself start with `prefix`) up to `end` (exclusive;
/// `None`: to the end of the prefix). Stops early when `visit` returns false.
pub(crate) fn scan(
    db: &DB,
    prefix: &[u8],
    start: &[u8],
    end: Option<Vec<u8>>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut opts = ReadOptions::default();
    if let Some(end) = end.or_else(|| prefix_end(prefix)) {
        opts.set_iterate_upper_bound(end);
    }
    for item in db.iterator_opt(IteratorMode::From(start, Direction::Forward), opts) {
        let (key, value) = item?;
        if !key.starts_with(prefix) || !visit(&key, &value)? {
            break;
        }
    }
    Ok(())
}

/// A record's key and value.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// The last record whose key starts with `prefix`, if any.
pub(crate) fn last_with_prefix(db: &DB, prefix: &[u8]) -> Result<Option<KeyValue>, StoreError> {
    let mut it = db.raw_iterator();
    match prefix_end(prefix) {
        // Every key of the prefix sorts before the prefix's successor, so the
        // record just before the successor is the prefix's last, if it has one.
        Some(end) => {
            it.seek_for_prev(&end);
            if it.valid() && it.key() == Some(end.as_slice()) {
                it.prev();
            }
        }
        None => it.seek_to_last(),
    }
    it.status()?;
    match (it.key(), it.value()) {
        (Some(key), Some(value)) if key.starts_with(prefix) => Ok(Some((key.to_vec(), value.to_vec()))),
        _ => Ok(None),
    }
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when the prefix is all `0xff`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Locks `mutex`, also when a thread panicked while holding it: every
/// critical section in this crate updates memory only after its RocksDB
/// write succeeded, so the guarded state is consistent at any panic point.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_successor() {
        assert_eq!(prefix_end(b"L"), Some(b"M".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}

/// Small durable values by key (see [`StateStore::meta`]). Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    db: Arc<DB>,
}

impl Meta {
    fn key(key: &str) -> Vec<u8> {
        let mut k = vec![TAG_META];
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(Self::key(key))?)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(Self::key(key));
        write_durably(&self.db, batch)
    }

    /// Writes durably: on disk when this returns.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(Self::key(key), value);
        write_durably(&self.db, batch)
    }
}
