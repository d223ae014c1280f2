//! Whose fault an error is, and whether trying again can help: the shared
//! classification of this crate's error types.
//!
//! Every connector error type ([`LogError`](crate::log::LogError),
//! [`StoreError`](crate::store::StoreError),
//! [`KafkaSourceError`](crate::kafka::KafkaSourceError),
//! [`ProduceError`](crate::kafka::ProduceError),
//! [`SinkError`](crate::sink::SinkError),
//! [`DecodeError`](crate::decode::DecodeError),
//! [`KeyDecodeError`](crate::decode::KeyDecodeError),
//! [`IngestError`](crate::ingest::IngestError)) has two methods:
//!
//! - `kind()`: the [`ErrorKind`], whose fault it is;
//! - `retryable()`: whether trying the same thing again, with nothing
//!   changed by the user, may succeed (a broker that is down, a busy disk).
//!   Never true for an [`ErrorKind::User`] error.
//!
//! So a caller can answer without reading messages: an HTTP layer, for
//! instance, with 400 for a user error, 503 for a retryable one and 500
//! otherwise.

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user's data or configuration: a bad event, topic name,
    /// partition, client setting, or a source topic that does not exist.
    /// Fixing the input fixes it.
    User,
    /// A system outside weir: the Kafka broker, the disk, RocksDB's I/O.
    External,
    /// weir itself: a broken invariant, or a record it wrote and cannot
    /// read back.
    Internal,
}
