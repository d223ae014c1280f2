//! Key compaction of upsert topics, like Kafka's `cleanup.policy=compact`:
//! of the records no reader still needs, only the latest of each key stays
//! (DESIGN.md §4, "Durable state").
//!
//! # What it keeps, and why that is enough
//! A topic is compacted only when every table reading it is an upsert
//! table; a record's key is the tuple of its keys under each of them. In
//! the region below the readers' floor (every dataflow has a snapshot past
//! it), a record goes when a later one (by seq, across partitions) has the
//! same key, and a delete goes when it is the latest of its key and no
//! older record of the key stays. For each reader, the latest record of
//! every key in any range `[from, end]` reaching past the region is then
//! what it was, so a replay from any time, including a rebuild from the
//! start, gives the same upsert table. What is lost is the history in
//! between: a point-in-time read inside the region is refused.
//!
//! A partition's last record is never removed (a restart resumes its
//! offsets from it), and a record that does not decode as an upsert or a
//! delete for some reader (a dead letter) is kept.

use std::collections::HashMap;

use weir_operators::repr::{Row, Tick};

use crate::log::{EventLog, LogError};
use crate::source::decoder::{Decoded, TableDecoder};

/// Records read per call while scanning.
const CHUNK: usize = 4096;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Records looked at.
    pub scanned: u64,
    pub removed: u64,
}

/// The latest record of a key seen so far in the region.
struct Latest {
    partition: u32,
    offset: u64,
    seq: u64,
    delete: bool,
    /// The record cannot be removed (a partition's last record).
    pinned: bool,
    /// An older record of the key stays (was pinned): removing a delete
    /// would bring it back.
    older_stays: bool,
}

/// Compacts `topic` below `floor` (records appended at or after it are not
/// looked at) for the upsert tables `readers`. Skips the work when nothing
/// was appended below the floor since the last pass of this process.
///
/// # Contract
/// `readers` are every table that reads the topic, all with a primary key;
/// no dataflow needs a record appended before `floor`.
pub fn compact(log: &EventLog, topic: &str, readers: &[TableDecoder], floor: Tick) -> Result<Compacted, LogError> {
    let partitions = log.partitions(topic);
    let ends: Vec<u64> = (0..partitions).map(|p| log.end_offset(topic, p)).collect();
    // Up to the floor, and the last record too when it is below it (looked
    // at, but pinned).
    let region: Vec<u64> = (0..partitions)
        .map(|p| log.first_offset_from(topic, p, floor).min(ends[p as usize]))
        .collect();
    let before = log.compacted_to(topic);
    if readers.is_empty()
        || region
            .iter()
            .zip(before.iter().chain(std::iter::repeat(&0)))
            .all(|(r, b)| r <= b)
    {
        return Ok(Compacted::default());
    }
    let mut latest: HashMap<Vec<Row>, Latest> = HashMap::new();
    let mut removed = Vec::new();
    let mut scanned = 0;
    let mut through = 0;
    for p in 0..partitions {
        let (mut next, stop) = (log.start_offset(topic, p), region[p as usize]);
        while next < stop {
            let records = log.read(topic, p, next, CHUNK.min((stop - next) as usize))?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            for rec in records.iter().filter(|r| r.offset < stop) {
                scanned += 1;
                through = through.max(rec.tick);
                let Some((key, delete)) = key_of(readers, p, rec) else {
                    continue;
                };
                let this = Latest {
                    partition: p,
                    offset: rec.offset,
                    seq: rec.seq,
                    delete,
                    pinned: rec.offset + 1 == ends[p as usize],
                    older_stays: false,
                };
                let (older, newer) = match latest.remove(&key) {
                    None => {
                        latest.insert(key, this);
                        continue;
                    }
                    Some(l) if l.seq < this.seq => (l, this),
                    Some(l) => (this, l),
                };
                let mut newer = newer;
                if older.pinned || older.older_stays {
                    newer.older_stays = true;
                }
                if !older.pinned {
                    removed.push((older.partition, older.offset));
                }
                latest.insert(key, newer);
            }
        }
    }
    for l in latest.values() {
        if l.delete && !l.pinned && !l.older_stays {
            removed.push((l.partition, l.offset));
        }
    }
    removed.sort_unstable();
    let n = log.remove_compacted(topic, &removed, &region, through)?;
    Ok(Compacted { scanned, removed: n })
}

/// The record's key under every reader and whether it deletes it; `None`
/// when some reader does not take it as an upsert or a delete.
fn key_of(readers: &[TableDecoder], partition: u32, rec: &crate::log::LogRecord) -> Option<(Vec<Row>, bool)> {
    let mut key = Vec::with_capacity(readers.len());
    let mut delete = None;
    for r in readers {
        let (k, d) = match r.decode(partition, rec).ok()? {
            Decoded::Upsert { key, .. } => (key, false),
            Decoded::Delete { key } => (key, true),
            Decoded::Append(_) => return None,
        };
        // Readers disagreeing on what the record does: leave it alone.
        if *delete.get_or_insert(d) != d {
            return None;
        }
        key.push(k);
    }
    Some((key, delete?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::source::decoder::TableFormat;
    use crate::store::StateStore;
    use weir_operators::repr::{Column, Schema, SqlType};

    fn decoder() -> TableDecoder {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: true,
        };
        TableDecoder::new(TableFormat {
            name: "t".into(),
            schema: Schema {
                columns: vec![col("k", SqlType::BigInt), col("v", SqlType::BigInt)],
            },
            primary_key: Some(vec![0]),
            log_topic: "t".into(),
            kafka_topic: None,
        })
    }

    /// The upsert table a replay of the topic's records from `from_tick`
    /// on gives: the naive reference, one pass in seq order.
    fn replay(log: &EventLog, from_tick: u64) -> Vec<(i64, i64)> {
        let mut all = Vec::new();
        for p in 0..log.partitions("t") {
            all.extend(log.read("t", p, 0, usize::MAX).expect("read"));
        }
        all.sort_by_key(|r| r.seq);
        let mut table = std::collections::BTreeMap::new();
        for r in all.iter().filter(|r| r.tick >= from_tick) {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
            // A dead letter changes nothing.
            let Some(k) = v["k"].as_i64() else { continue };
            if v.get("__op").is_some() {
                table.remove(&k);
            } else {
                table.insert(k, v["v"].as_i64().expect("v"));
            }
        }
        table.into_iter().collect()
    }

    #[test]
    fn compaction_keeps_the_latest_per_key_and_replays_to_the_same_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(0);
        let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock.clone())).expect("open");
        let log = store.log();
        log.create_topic("t", 3).expect("topic");
        // A small LCG: the same pseudo-random history every run.
        let mut x: u64 = 7;
        let mut rand = |n: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        for tick in 1..=600u64 {
            clock.set(tick);
            let k = rand(20);
            let event = if rand(5) == 0 {
                format!("{{\"k\":{k},\"__op\":\"delete\"}}")
            } else if rand(40) == 0 {
                "{\"k\":\"not a number\"}".to_string()
            } else {
                format!("{{\"k\":{k},\"v\":{tick}}}")
            };
            log.append("t", Some(rand(3) as u32), &[event.into_bytes()])
                .expect("append");
        }
        let readers = [decoder()];
        let full: Vec<_> = [0, 200, 450, 601].iter().map(|&f| replay(&log, f)).collect();
        let held = log.held("t").records;
        let first = compact(&log, "t", &readers, 400).expect("compact");
        assert!(first.removed > 0, "{first:?}");
        assert_eq!(log.held("t").records, held - first.removed);
        assert_eq!(log.held("t").compacted_through, 399);
        // Nothing new below the floor: no work.
        assert_eq!(compact(&log, "t", &readers, 400).expect("again"), Compacted::default());
        // Every record at or after the floor is still there.
        let mut after = 0;
        for p in 0..3 {
            after += log
                .read("t", p, 0, usize::MAX)
                .expect("read")
                .iter()
                .filter(|r| r.tick >= 400)
                .count();
        }
        assert_eq!(after, 201);
        let second = compact(&log, "t", &readers, u64::MAX).expect("compact all");
        assert!(second.removed > 0);
        // Replays from the start, or from any time, give the same table.
        for (i, &from) in [0, 200, 450, 601].iter().enumerate() {
            assert_eq!(replay(&log, from), full[i], "from {from}");
        }
        // At most one record per key, the dead letters, and each
        // partition's last record remain.
        let remaining = log.held("t").records;
        assert!(remaining <= 20 + 15 + 3, "{remaining} records left");
        for p in 0..3 {
            let end = log.end_offset("t", p);
            assert_eq!(log.read("t", p, end - 1, 1).expect("read")[0].offset, end - 1);
        }
        // The holes and the compaction's tick survive a reopen; the end
        // offsets come from the last records, which stayed.
        let ends: Vec<u64> = (0..3).map(|p| log.end_offset("t", p)).collect();
        drop(log);
        drop(store);
        let store = StateStore::open_with_clock(dir.path(), Clock::Manual(clock)).expect("reopen");
        let log = store.log();
        assert_eq!(log.held("t").records, remaining);
        assert_eq!(log.held("t").compacted_through, 600);
        assert_eq!((0..3).map(|p| log.end_offset("t", p)).collect::<Vec<_>>(), ends);
        assert_eq!(replay(&log, 0), full[0]);
        // Trimming a prefix with holes counts only what was there.
        let cut: Vec<u64> = (0..3).map(|p| log.end_offset("t", p) / 2).collect();
        let trimmed = log.trim("t", &cut).expect("trim");
        assert_eq!(log.held("t").records, remaining - trimmed);
    }
}
