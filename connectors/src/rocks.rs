//! RocksDB access shared by the state store's views: the [`StoreError`],
//! durable writes, prefix scans and the last record of a prefix.

use std::path::PathBuf;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

use crate::error::ErrorKind;

/// Errors of the state store itself: RocksDB failures and records that
/// cannot be decoded.
///
/// | variant | kind | retryable |
/// |---|---|---|
/// | `Open`, `Rocks` | by RocksDB's error kind: I/O, busy, timed out, try again, incomplete, aborted, shutting down: `External`, retryable; corruption, invalid argument, not supported, column family dropped, merge in progress: `Internal`; any other: `External` | as said |
/// | `UnsupportedVersion` | `User` (the data directory belongs to another build) | no |
/// | `Corrupt`, `Encode` | `Internal` | no |
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

    /// Whose fault it is (see the table above).
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Open { source, .. } | StoreError::Rocks(source) => rocks_kind(source),
            StoreError::UnsupportedVersion { .. } => ErrorKind::User,
            StoreError::Corrupt { .. } | StoreError::Encode { .. } => ErrorKind::Internal,
        }
    }

    /// Whether the same operation, tried again, may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Rocks(source) => rocks_retryable(source),
            StoreError::UnsupportedVersion { .. } | StoreError::Corrupt { .. } | StoreError::Encode { .. } => false,
        }
    }
}

fn rocks_kind(e: &rocksdb::Error) -> ErrorKind {
    use rocksdb::ErrorKind as K;
    match e.kind() {
        K::Corruption | K::InvalidArgument | K::NotSupported | K::ColumnFamilyDropped | K::MergeInProgress => {
            ErrorKind::Internal
        }
        _ => ErrorKind::External,
    }
}

fn rocks_retryable(e: &rocksdb::Error) -> bool {
    use rocksdb::ErrorKind as K;
    matches!(
        e.kind(),
        K::IOError | K::Busy | K::TimedOut | K::TryAgain | K::Incomplete | K::Aborted | K::ShutdownInProgress
    )
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
    visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    scan_with(db, ReadOptions::default(), prefix, start, end, visit)
}

/// Read options for data read once in order (the log, by a source catching
/// up): the blocks read do not go into the block cache, which would
/// otherwise fill with history no one reads again and push out the index
/// blocks and recent records that point reads need.
pub(crate) fn read_once() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.fill_cache(false);
    opts
}

/// [`scan`] with `opts` (such as [`read_once`]).
pub(crate) fn scan_with(
    db: &DB,
    mut opts: ReadOptions,
    prefix: &[u8],
    start: &[u8],
    end: Option<Vec<u8>>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
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
    match prefix_end(prefix) {
        // Every key of the prefix sorts before the prefix's successor.
        Some(end) => last_before(db, prefix, &end),
        None => {
            let mut it = db.raw_iterator();
            it.seek_to_last();
            it.status()?;
            match (it.key(), it.value()) {
                (Some(key), Some(value)) if key.starts_with(prefix) => Ok(Some((key.to_vec(), value.to_vec()))),
                _ => Ok(None),
            }
        }
    }
}

/// The last record whose key starts with `prefix` and sorts before
/// `upper`, if any.
pub(crate) fn last_before(db: &DB, prefix: &[u8], upper: &[u8]) -> Result<Option<KeyValue>, StoreError> {
    let mut it = db.raw_iterator();
    it.seek_for_prev(upper);
    if it.valid() && it.key() == Some(upper) {
        it.prev();
    }
    it.status()?;
    match (it.key(), it.value()) {
        (Some(key), Some(value)) if key.starts_with(prefix) => Ok(Some((key.to_vec(), value.to_vec()))),
        _ => Ok(None),
    }
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when the prefix is all `0xff`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
