//! An action sink's durable outbox: each request from the moment its
//! change is taken in until its outcome is recorded.
//!
//! Taking in a group of times writes their requests and the sink's progress
//! (the last time taken in) in one durable batch, so after a crash every
//! change is either in the outbox or replayed to the sink again, never
//! both and never neither. An outcome is recorded in one or two batches
//! (see [`super::record`]); a request whose outcome is not recorded is sent
//! again after a restart with the same idempotency key.

use std::sync::Arc;

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};
use weir_operators::repr::Tick;

use super::outcome::Outcome;
use super::request::ActionRequest;
use crate::keys::{read_u64, TAG_OUTBOX};
use crate::rocks::{scan, write_durably, StoreError};
use crate::sink::SinkProgress;

/// What the outbox holds of one request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Entry {
    /// Not sent, or sent without a recorded outcome.
    Pending(ActionRequest),
    /// Its outcome is on the response topic; the fallback topic's event
    /// (if any) is not yet written.
    Responded(Outcome),
}

pub struct Outbox {
    db: Arc<DB>,
    prefix: Vec<u8>,
    progress: SinkProgress,
}

impl Outbox {
    /// The outbox of sink `sink` calling `url` (a sink defined again with
    /// another URL is another sink, as its progress is).
    pub fn new(db: Arc<DB>, sink: &str, url: &str, progress: SinkProgress) -> Outbox {
        let mut prefix = vec![TAG_OUTBOX];
        prefix.extend_from_slice(sink.as_bytes());
        prefix.push(0);
        prefix.extend_from_slice(url.as_bytes());
        prefix.push(0);
        Outbox { db, prefix, progress }
    }

    /// The sink's progress: the last time taken in.
    pub fn progress(&self) -> &SinkProgress {
        &self.progress
    }

    fn key(&self, seq: u64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// What the outbox holds, in order, and the next free number.
    pub fn load(&self) -> Result<(Vec<Entry>, u64), StoreError> {
        let mut out = Vec::new();
        let mut next = 0;
        scan(&self.db, &self.prefix, &self.prefix, None, |key, value| {
            let seq = read_u64(&key[self.prefix.len()..])
                .ok_or_else(|| StoreError::corrupt(key, "outbox key has no number"))?;
            let entry: Entry = serde_json::from_slice(value)
                .map_err(|e| StoreError::corrupt(key, format!("outbox entry is not readable: {e}")))?;
            next = seq + 1;
            out.push(entry);
            Ok(true)
        })?;
        Ok((out, next))
    }

    /// Writes `requests` and records every change through `through` as
    /// taken in, in one durable batch.
    pub fn accept(&self, requests: &[ActionRequest], through: Tick) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for r in requests {
            batch.put(self.key(r.seq), encode(&Entry::Pending(r.clone()))?);
        }
        self.progress.put_in(&mut batch, "committed", through);
        write_durably(&self.db, batch)
    }

    /// Writes one request (a dead letter sent through again), durably.
    pub fn add(&self, request: &ActionRequest) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(self.key(request.seq), encode(&Entry::Pending(request.clone()))?);
        write_durably(&self.db, batch)
    }

    /// Adds marking `outcome`'s request responded to `batch`.
    pub fn responded_in(&self, batch: &mut WriteBatch, outcome: &Outcome) -> Result<(), StoreError> {
        batch.put(
            self.key(outcome.request.seq),
            encode(&Entry::Responded(outcome.clone()))?,
        );
        Ok(())
    }

    /// Adds removing request `seq` to `batch`.
    pub fn remove_in(&self, batch: &mut WriteBatch, seq: u64) {
        batch.delete(self.key(seq));
    }

    pub fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        write_durably(&self.db, batch)
    }

    /// Removes every entry and the progress: the sink is gone.
    pub fn forget(&self) -> Result<(), StoreError> {
        let mut end = self.prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let mut batch = WriteBatch::default();
        batch.delete_range(self.prefix.clone(), end);
        write_durably(&self.db, batch)?;
        self.progress.forget()
    }
}

fn encode(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(|e| StoreError::Encode {
        what: "an outbox entry".into(),
        reason: e.to_string(),
    })
}
