//! The event log's records in the state store: their keys and values (see
//! the layout in [`crate::keys`]), and which topic names keys can hold.

use super::{LogError, LogRecord, MAX_TOPIC_NAME_LEN};
use crate::keys::{read_u64, TAG_COMPACTED, TAG_LOG, TAG_TOPIC, TAG_TRIMMED};
use crate::rocks::StoreError;

/// Whether `name` is a valid topic name: 1 to 200 characters of
/// `[A-Za-z0-9._-]`. (The key layout relies on names never holding `0x00`.)
pub fn valid_topic_name(name: &str) -> bool {
    (1..=MAX_TOPIC_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn check_topic_name(name: &str) -> Result<(), LogError> {
    if valid_topic_name(name) {
        Ok(())
    } else {
        Err(LogError::InvalidTopicName(name.to_string()))
    }
}

pub(super) fn topic_key(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(TAG_TOPIC);
    key.extend_from_slice(topic.as_bytes());
    key
}

/// `L` topic `0x00` partition: the prefix of one partition's records.
pub(super) fn partition_prefix(topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len() + 1 + 4 + 8);
    key.push(TAG_LOG);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

pub(super) fn trimmed_key(topic: &str) -> Vec<u8> {
    let mut k = vec![TAG_TRIMMED];
    k.extend_from_slice(topic.as_bytes());
    k
}

pub(super) fn compacted_key(topic: &str) -> Vec<u8> {
    let mut k = vec![TAG_COMPACTED];
    k.extend_from_slice(topic.as_bytes());
    k
}

/// The value of [`compacted_key`]: the tick compaction ran through, then
/// each partition's start offset and holes after it (the first record held
/// may be past the start, when compaction removed the ones before it).
pub(super) fn compacted_value(through: u64, starts: &[u64], holes: &[u64]) -> Vec<u8> {
    let mut v = through.to_be_bytes().to_vec();
    for (s, h) in starts.iter().zip(holes) {
        v.extend_from_slice(&s.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
    }
    v
}

/// The key prefix of every record of a topic.
pub(super) fn topic_records_prefix(topic: &str) -> Vec<u8> {
    let mut k = vec![TAG_LOG];
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k
}

pub(super) fn record_key(topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut key = partition_prefix(topic, partition);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

/// Splits a record's key and value (seq, tick, payload) into a record.
pub(super) fn decode_record(key: &[u8], value: &[u8]) -> Result<LogRecord, StoreError> {
    let offset = key
        .len()
        .checked_sub(8)
        .and_then(|at| read_u64(&key[at..]))
        .ok_or_else(|| StoreError::corrupt(key, "log key has no offset"))?;
    let seq = read_u64(value).ok_or_else(|| StoreError::corrupt(key, "log record has no seq"))?;
    let tick = value
        .get(8..)
        .and_then(read_u64)
        .ok_or_else(|| StoreError::corrupt(key, "log record has no tick"))?;
    Ok(LogRecord {
        offset,
        seq,
        tick,
        payload: value[16..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("orders.v1_eu-west"));
        assert!(valid_topic_name(&"a".repeat(200)));
        assert!(!valid_topic_name(&"a".repeat(201)));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name("a\0b"));
        assert!(!valid_topic_name("é"));
    }

    #[test]
    fn record_keys_sort_by_partition_then_offset() {
        let mut keys = vec![
            record_key("t", 1, 0),
            record_key("t", 0, 256),
            record_key("t", 0, 1),
            record_key("t", 0, 2),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                record_key("t", 0, 1),
                record_key("t", 0, 2),
                record_key("t", 0, 256),
                record_key("t", 1, 0)
            ]
        );
        // A topic whose name extends another's does not interleave with it.
        assert!(record_key("t", u32::MAX, u64::MAX) < record_key("t.", 0, 0));
    }
}
