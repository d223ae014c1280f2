//! Durable snapshots of dataflow state, per job (DESIGN.md §4, "Durable
//! state").
//!
//! A snapshot is numbered per job and written in parts (one per worker that
//! read it), each part in chunks of opaque entries tagged with their cut.
//! The chunks are plain writes; the manifest is written last, in one synced
//! batch with the removal of the snapshots beyond the newest
//! [`KEEP_SNAPSHOTS`]. A synced write makes every earlier write of the
//! database durable too (RocksDB's write-ahead log is sequential), so a
//! snapshot whose manifest exists is whole, and one without (a crash while
//! writing) is ignored and its chunks removed at the next open.

use std::sync::Arc;

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};
use weir_operators::repr::Tick;

use crate::keys::{read_u32, TAG_SNAPSHOT_DATA, TAG_SNAPSHOT_MANIFEST};
use crate::rocks::{prefix_end as successor, scan, write_durably, StoreError};

/// Snapshots kept per job: the newest one, and the one before in case the
/// newest cannot be used.
pub const KEEP_SNAPSHOTS: usize = 2;

/// What a complete snapshot holds and where it fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Increasing per job.
    pub number: u64,
    /// The render's snapshot format at write time:
    /// which cuts a plan has and how their entries are encoded.
    pub format: u32,
    /// The job's plan fingerprint: a snapshot is only restored into the
    /// same plan.
    pub fingerprint: u64,
    /// The completed time the state is of.
    pub at: Tick,
    /// Parts written (the worker count at write time).
    pub parts: u32,
    pub entries: u64,
    pub bytes: u64,
    /// Wall-clock time the manifest was written, ms since the epoch.
    pub written_ms: u64,
    /// From the snapshot's start to its manifest, ms.
    pub write_ms: u64,
}

/// The snapshot store (see [`StateStore::snapshots`](crate::store::StateStore::snapshots)).
/// Cheap to clone.
#[derive(Clone)]
pub struct Snapshots {
    db: Arc<DB>,
}

fn job_prefix(tag: u8, job: &str) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k
}

fn data_prefix(job: &str, number: u64) -> Vec<u8> {
    let mut k = job_prefix(TAG_SNAPSHOT_DATA, job);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

fn part_prefix(job: &str, number: u64, part: u32) -> Vec<u8> {
    let mut k = data_prefix(job, number);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

fn manifest_key(job: &str, number: u64) -> Vec<u8> {
    let mut k = job_prefix(TAG_SNAPSHOT_MANIFEST, job);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    successor(prefix).unwrap_or_else(|| vec![u8::MAX; prefix.len() + 1])
}

/// Entries of a chunk: `cut u32, length u32, bytes`, repeated.
fn encode_chunk(entries: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|(_, e)| e.len() + 8).sum());
    for (cut, e) in entries {
        out.extend_from_slice(&cut.to_be_bytes());
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn decode_chunk(key: &[u8], mut bytes: &[u8], f: &mut dyn FnMut(u32, &[u8])) -> Result<(), StoreError> {
    while !bytes.is_empty() {
        let (Some(cut), Some(len)) = (read_u32(bytes), bytes.get(4..).and_then(read_u32)) else {
            return Err(StoreError::corrupt(key, "snapshot chunk entry header cut short"));
        };
        let Some(entry) = bytes.get(8..8 + len as usize) else {
            return Err(StoreError::corrupt(key, "snapshot chunk entry cut short"));
        };
        f(cut, entry);
        bytes = &bytes[8 + len as usize..];
    }
    Ok(())
}

impl Snapshots {
    /// Opens the snapshot store and removes the chunks of snapshots that
    /// never got their manifest (a crash while writing).
    pub(crate) fn recover(db: Arc<DB>) -> Result<Snapshots, StoreError> {
        let s = Snapshots { db };
        let mut committed = std::collections::BTreeSet::new();
        scan(
            &s.db,
            &[TAG_SNAPSHOT_MANIFEST],
            &[TAG_SNAPSHOT_MANIFEST],
            None,
            |k, _| {
                committed.insert(k[1..].to_vec());
                Ok(true)
            },
        )?;
        let mut orphans: Vec<Vec<u8>> = Vec::new();
        scan(&s.db, &[TAG_SNAPSHOT_DATA], &[TAG_SNAPSHOT_DATA], None, |k, _| {
            // job 0x00 number: the manifest's key body.
            if let Some(end) = k.iter().position(|&b| b == 0).map(|p| p + 1 + 8) {
                if let Some(body) = k.get(1..end) {
                    if !committed.contains(body) && orphans.last().map(|o| o.as_slice()) != Some(body) {
                        orphans.push(body.to_vec());
                    }
                }
            }
            Ok(true)
        })?;
        if !orphans.is_empty() {
            let mut batch = WriteBatch::default();
            for body in orphans {
                let mut prefix = vec![TAG_SNAPSHOT_DATA];
                prefix.extend_from_slice(&body);
                batch.delete_range(&prefix, &prefix_end(&prefix));
            }
            write_durably(&s.db, batch)?;
        }
        Ok(s)
    }

    /// Writes one chunk of a part (not synced: the manifest's write is).
    /// Returns the bytes written.
    pub fn write_chunk(
        &self,
        job: &str,
        number: u64,
        part: u32,
        chunk: u32,
        entries: &[(u32, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        let mut key = part_prefix(job, number, part);
        key.extend_from_slice(&chunk.to_be_bytes());
        let value = encode_chunk(entries);
        let n = value.len() as u64;
        self.db.put(key, value)?;
        Ok(n)
    }

    /// Makes a snapshot whose parts are all written complete, and removes
    /// the job's snapshots beyond the newest [`KEEP_SNAPSHOTS`], in one
    /// synced batch.
    pub fn commit(&self, job: &str, manifest: &SnapshotManifest) -> Result<(), StoreError> {
        let value = serde_json::to_vec(manifest).map_err(|e| StoreError::Encode {
            what: "snapshot manifest".into(),
            reason: e.to_string(),
        })?;
        let mut batch = WriteBatch::default();
        batch.put(manifest_key(job, manifest.number), value);
        let older: Vec<u64> = self
            .manifests(job)?
            .into_iter()
            .map(|m| m.number)
            .filter(|&n| n < manifest.number)
            .skip(KEEP_SNAPSHOTS - 1)
            .collect();
        for n in older {
            batch.delete(manifest_key(job, n));
            let prefix = data_prefix(job, n);
            batch.delete_range(&prefix, &prefix_end(&prefix));
        }
        write_durably(&self.db, batch)
    }

    /// Removes what was written of a snapshot that will not be committed.
    pub fn discard(&self, job: &str, number: u64) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let prefix = data_prefix(job, number);
        batch.delete_range(&prefix, &prefix_end(&prefix));
        write_durably(&self.db, batch)
    }

    /// The job's complete snapshots, newest first.
    pub fn manifests(&self, job: &str) -> Result<Vec<SnapshotManifest>, StoreError> {
        let mut out = Vec::new();
        let prefix = job_prefix(TAG_SNAPSHOT_MANIFEST, job);
        scan(&self.db, &prefix, &prefix, None, |k, v| {
            let m = serde_json::from_slice::<SnapshotManifest>(v)
                .map_err(|e| StoreError::corrupt(k, format!("snapshot manifest: {e}")))?;
            out.push(m);
            Ok(true)
        })?;
        out.sort_by_key(|m| std::cmp::Reverse(m.number));
        Ok(out)
    }

    /// Calls `f(cut, entry)` for every entry of one part of a snapshot.
    pub fn read_part(
        &self,
        job: &str,
        number: u64,
        part: u32,
        f: &mut dyn FnMut(u32, &[u8]),
    ) -> Result<(), StoreError> {
        let prefix = part_prefix(job, number, part);
        scan(&self.db, &prefix, &prefix, None, |k, v| {
            decode_chunk(k, v, f)?;
            Ok(true)
        })
    }

    /// Removes every snapshot of a job (dropped or replaced).
    pub fn forget_job(&self, job: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for tag in [TAG_SNAPSHOT_MANIFEST, TAG_SNAPSHOT_DATA] {
            let prefix = job_prefix(tag, job);
            batch.delete_range(&prefix, &prefix_end(&prefix));
        }
        write_durably(&self.db, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Snapshots {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        Snapshots::recover(Arc::new(DB::open(&opts, dir).expect("open"))).expect("recover")
    }

    fn manifest(number: u64) -> SnapshotManifest {
        SnapshotManifest {
            number,
            format: 1,
            fingerprint: 7,
            at: number * 10,
            parts: 1,
            entries: 2,
            bytes: 0,
            written_ms: 0,
            write_ms: 0,
        }
    }

    #[test]
    fn committed_snapshots_read_back_the_last_two_are_kept_and_uncommitted_ones_vanish() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(dir.path());
            for n in 1..=3 {
                s.write_chunk("shop", n, 0, 0, &[(0, vec![n as u8]), (1, vec![1, 2])])
                    .expect("chunk");
                s.commit("shop", &manifest(n)).expect("commit");
            }
            // A fourth, never committed, and another job's.
            s.write_chunk("shop", 4, 0, 0, &[(0, vec![4])]).expect("chunk");
            s.write_chunk("shop.b", 1, 0, 0, &[(0, vec![9])]).expect("chunk");
            s.commit("shop.b", &manifest(1)).expect("commit");
            let numbers: Vec<u64> = s
                .manifests("shop")
                .expect("manifests")
                .iter()
                .map(|m| m.number)
                .collect();
            assert_eq!(numbers, vec![3, 2]);
        }
        let s = open(dir.path());
        let mut uncommitted = Vec::new();
        s.read_part("shop", 4, 0, &mut |cut, e| uncommitted.push((cut, e.to_vec())))
            .expect("read");
        assert!(uncommitted.is_empty(), "the uncommitted chunks are gone");
        let mut got = Vec::new();
        s.read_part("shop", 3, 0, &mut |cut, e| got.push((cut, e.to_vec())))
            .expect("read");
        assert_eq!(got, vec![(0, vec![3]), (1, vec![1, 2])]);
        let mut old = Vec::new();
        s.read_part("shop", 1, 0, &mut |cut, e| old.push((cut, e.to_vec())))
            .expect("read");
        assert!(old.is_empty(), "snapshot 1 was removed with its manifest");
        s.forget_job("shop").expect("forget");
        assert!(s.manifests("shop").expect("manifests").is_empty());
        assert_eq!(s.manifests("shop.b").expect("manifests").len(), 1, "another job's stay");
    }
}
