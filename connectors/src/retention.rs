//! Retention: how much of a topic's history the log keeps, and which
//! records a policy lets go (DESIGN.md §4, "Durable state"). The default is
//! to keep everything: the log is the event store.

use serde::{Deserialize, Serialize};
use weir_operators::repr::Tick;

use crate::log::EventLog;
use crate::meta::Meta;
use crate::rocks::StoreError;

/// A topic's retention: records older than `max_age_ms` (by append tick),
/// and the oldest records beyond `max_bytes` on disk, may be removed; with
/// `compact`, records a later one of the same key supersedes may be too
/// ([`crate::compaction`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub max_age_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compact: bool,
}

impl RetentionPolicy {
    pub fn keeps_everything(&self) -> bool {
        self.max_age_ms.is_none() && self.max_bytes.is_none() && !self.compact
    }
}

/// The durable retention policies, by topic.
#[derive(Clone)]
pub struct Retention {
    meta: Meta,
}

fn key(topic: &str) -> String {
    format!("retention/{topic}")
}

impl Retention {
    pub fn new(meta: Meta) -> Retention {
        Retention { meta }
    }

    pub fn get(&self, topic: &str) -> Result<RetentionPolicy, StoreError> {
        match self.meta.get(&key(topic))? {
            None => Ok(RetentionPolicy::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: key(topic),
                reason: e.to_string(),
            }),
        }
    }

    /// Sets (durably) a topic's policy; one that keeps everything is removed.
    pub fn set(&self, topic: &str, policy: RetentionPolicy) -> Result<(), StoreError> {
        if policy.keeps_everything() {
            return self.meta.delete(&key(topic));
        }
        let value = serde_json::to_vec(&policy).map_err(|e| StoreError::Encode {
            what: "a retention policy".into(),
            reason: e.to_string(),
        })?;
        self.meta.put(&key(topic), &value)
    }
}

/// Per partition of `topic`, the first offset to keep under `policy` at
/// `now`, but never a record appended at or after `floor` (the oldest time
/// a reader still needs).
pub fn keep_from(log: &EventLog, topic: &str, policy: &RetentionPolicy, now: Tick, floor: Tick) -> Vec<u64> {
    // RocksDB's size estimate, only for a size limit.
    let bytes = policy.max_bytes.map(|_| log.held(topic).bytes).unwrap_or(0);
    (0..log.partitions(topic))
        .map(|p| {
            let (start, end) = (log.start_offset(topic, p), log.end_offset(topic, p));
            let mut keep = start;
            if let Some(age) = policy.max_age_ms {
                keep = keep.max(log.first_offset_from(topic, p, now.saturating_sub(age)));
            }
            if let Some(max) = policy.max_bytes {
                if bytes > max {
                    // The same share of each partition's oldest records.
                    let share = (bytes - max) as f64 / bytes as f64;
                    let n = ((end - start) as f64 * share).ceil() as u64;
                    keep = keep.max(start + n.min(end - start));
                }
            }
            keep.min(log.first_offset_from(topic, p, floor))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::StateStore;

    #[test]
    fn age_retention_trims_a_prefix_but_never_past_the_floor_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(0);
        {
            let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock.clone())).expect("open");
            let log = store.log();
            log.create_topic("t", 1).expect("topic");
            for tick in 1..=10 {
                clock.set(tick * 1000);
                log.append("t", Some(0), &[format!("{{\"n\":{tick}}}").into_bytes()])
                    .expect("append");
            }
            let policy = RetentionPolicy {
                max_age_ms: Some(4_500),
                max_bytes: None,
                compact: false,
            };
            // Records at 6000..10000 are within 4.5 s of 10000; the floor
            // (a reader needs 3000 on) keeps more.
            assert_eq!(keep_from(&log, "t", &policy, 10_000, 3_000), vec![2]);
            assert_eq!(keep_from(&log, "t", &policy, 10_000, Tick::MAX), vec![5]);
            assert_eq!(log.trim("t", &[5]).expect("trim"), 5);
            assert_eq!(log.start_offset("t", 0), 5);
            let held = log.held("t");
            assert_eq!((held.records, held.trimmed_through), (5, 5_000));
            let rest = log.read("t", 0, 0, 100).expect("read");
            assert_eq!(
                rest.first().map(|r| r.offset),
                Some(5),
                "reading from 0 starts at what is held"
            );
            assert_eq!(log.first_offset_from("t", 0, 0), 5);
        }
        let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock)).expect("reopen");
        let log = store.log();
        assert_eq!(log.start_offset("t", 0), 5);
        assert_eq!(log.end_offset("t", 0), 10);
        assert_eq!(log.held("t").trimmed_through, 5_000);
    }
}
