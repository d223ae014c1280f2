//! The state store's key layout: the record kinds' tags, the layout's
//! version, and the big-endian integers keys and values are made of.
//!
//! Everything lives in RocksDB's default column family. The first byte of a
//! key names the record kind; integers are big-endian so that RocksDB's
//! bytewise order is numeric order. Topic names never contain `0x00` (see
//! [`crate::log::valid_topic_name`]), so a `0x00` after the name ends it and
//! keeps one topic's keys contiguous and sorted by name.
//!
//! | key | value | owner |
//! |---|---|---|
//! | `V` | format version, `u32` BE | [`StateStore`](crate::store::StateStore) |
//! | `T` topic | partition count, `u32` BE | [`EventLog`](crate::log::EventLog) |
//! | `L` topic `0x00` partition `u32` offset `u64` | seq `u64` BE, tick `u64` BE, then the payload | [`EventLog`](crate::log::EventLog) |
//! | `J` job name (UTF-8) | creation number `u64` BE, then the spec bytes | [`JobStore`](crate::job_store::JobStore) |
//! | `D` number `u64` | a [`DeadLetter`](crate::dead_letters::DeadLetter) as JSON | [`DeadLetters`](crate::dead_letters::DeadLetters) |
//! | `I` dead-letter id (UTF-8) | its number `u64` BE | [`DeadLetters`](crate::dead_letters::DeadLetters) |
//! | `C` source (UTF-8) | dead letters recorded for that source, `u64` BE | [`DeadLetters`](crate::dead_letters::DeadLetters) |
//! | `M` key (UTF-8) | any bytes | [`Meta`](crate::meta::Meta) |
//! | `R` topic | the largest tick of a record removed by retention, `u64` BE | [`EventLog`](crate::log::EventLog) |
//! | `K` topic | compaction: the tick it ran through `u64` BE, then each partition's removed records `u64` BE | [`EventLog`](crate::log::EventLog) |
//! | `N` job `0x00` snapshot `u64` | the snapshot's manifest as JSON | [`Snapshots`](crate::snapshots::Snapshots) |
//! | `S` job `0x00` snapshot `u64` part `u32` chunk `u32` | entries: cut `u32`, length `u32`, bytes | [`Snapshots`](crate::snapshots::Snapshots) |
//! | `A` sink `0x00` URL template `0x00` request `u64` | an action sink's outbox entry as JSON | [`Outbox`](crate::action::outbox::Outbox) |

/// Version of the key layout above. Bump it when the layout changes
/// incompatibly; [`StateStore::open`](crate::store::StateStore::open)
/// refuses a database of another version rather than misreading it.
pub const FORMAT_VERSION: u32 = 2;

pub(crate) const TAG_VERSION: u8 = b'V';
pub(crate) const TAG_TOPIC: u8 = b'T';
pub(crate) const TAG_LOG: u8 = b'L';
pub(crate) const TAG_JOB: u8 = b'J';
pub(crate) const TAG_DEAD_LETTER: u8 = b'D';
pub(crate) const TAG_DEAD_LETTER_ID: u8 = b'I';
pub(crate) const TAG_DEAD_LETTER_COUNT: u8 = b'C';
pub(crate) const TAG_META: u8 = b'M';
pub(crate) const TAG_SNAPSHOT_MANIFEST: u8 = b'N';
pub(crate) const TAG_TRIMMED: u8 = b'R';
pub(crate) const TAG_COMPACTED: u8 = b'K';
pub(crate) const TAG_SNAPSHOT_DATA: u8 = b'S';
pub(crate) const TAG_OUTBOX: u8 = b'A';

pub(crate) fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}
