//! Dead letters: events a source could not decode, kept durably with the
//! reason, so bad input is visible (`GET /v1/dlq`) and never silently lost.
//!
//! Recording is idempotent by [`DeadLetter::id`]: after a restart a source
//! replays its input and meets the same bad events again; giving them the
//! same id (e.g. derived from the [`Position`]) records each only once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::keys::{read_u64, TAG_DEAD_LETTER, TAG_DEAD_LETTER_COUNT, TAG_DEAD_LETTER_ID};
use crate::rocks::{last_with_prefix, scan, write_durably, StoreError};
use crate::sync::lock;

/// Where in the event log (or a Kafka topic) an event came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// One event that could not be processed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Identifies the letter: a second [`DeadLetters::record`] with the same
    /// id is ignored.
    pub id: String,
    /// The source (table) that rejected it.
    pub source: String,
    pub position: Option<Position>,
    /// The raw event, lossily converted to UTF-8.
    pub payload: String,
    pub reason: String,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Each time it was sent through again, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replays: Vec<Replay>,
}

/// One replay of a dead letter: when, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub at_ms: i64,
    /// Where it went (e.g. the offset it was appended at again, or the
    /// request it was sent as).
    pub outcome: String,
}

/// Handle to the dead-letter list. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct DeadLetters {
    inner: Arc<DeadLettersInner>,
}

struct DeadLettersInner {
    db: Arc<DB>,
    /// Held for the whole of a `record`, which serialises the id check, the
    /// numbering and the count update.
    state: Mutex<DeadLettersState>,
}

struct DeadLettersState {
    next_number: u64,
    counts: BTreeMap<String, u64>,
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + bytes.len());
    key.push(tag);
    key.extend_from_slice(bytes);
    key
}

impl DeadLetters {
    pub(crate) fn recover(db: Arc<DB>) -> Result<DeadLetters, StoreError> {
        let next_number = match last_with_prefix(&db, &[TAG_DEAD_LETTER])? {
            Some((key, _)) => {
                read_u64(&key[1..]).ok_or_else(|| StoreError::corrupt(&key, "dead letter key has no number"))? + 1
            }
            None => 0,
        };
        let mut counts = BTreeMap::new();
        scan(
            &db,
            &[TAG_DEAD_LETTER_COUNT],
            &[TAG_DEAD_LETTER_COUNT],
            None,
            |key, value| {
                let source =
                    std::str::from_utf8(&key[1..]).map_err(|_| StoreError::corrupt(key, "source is not UTF-8"))?;
                let count = read_u64(value).ok_or_else(|| StoreError::corrupt(key, "count is not 8 bytes"))?;
                counts.insert(source.to_string(), count);
                Ok(true)
            },
        )?;
        Ok(DeadLetters {
            inner: Arc::new(DeadLettersInner {
                db,
                state: Mutex::new(DeadLettersState { next_number, counts }),
            }),
        })
    }

    /// Records `letter` durably. Returns false, and changes nothing, when a
    /// letter with the same id is already recorded.
    pub fn record(&self, letter: &DeadLetter) -> Result<bool, StoreError> {
        let mut state = lock(&self.inner.state);
        let id_key = tagged(TAG_DEAD_LETTER_ID, letter.id.as_bytes());
        if self.inner.db.get_pinned(&id_key)?.is_some() {
            return Ok(false);
        }
        let number = state.next_number;
        let count = state.counts.get(&letter.source).copied().unwrap_or(0) + 1;
        let json = serde_json::to_vec(letter).map_err(|e| StoreError::Encode {
            what: format!("dead letter {}", letter.id),
            reason: e.to_string(),
        })?;
        let mut batch = WriteBatch::default();
        batch.put(tagged(TAG_DEAD_LETTER, &number.to_be_bytes()), json);
        batch.put(id_key, number.to_be_bytes());
        batch.put(
            tagged(TAG_DEAD_LETTER_COUNT, letter.source.as_bytes()),
            count.to_be_bytes(),
        );
        write_durably(&self.inner.db, batch)?;
        state.next_number = number + 1;
        state.counts.insert(letter.source.clone(), count);
        Ok(true)
    }

    /// Up to `limit` letters in the order they were recorded, each with its
    /// number: the first has a number greater than `after` (`None`: from the
    /// beginning). Pass the last number seen as `after` to page on.
    pub fn list(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let mut letters = Vec::new();
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(letters),
            Some(number) => number + 1,
        };
        if limit == 0 {
            return Ok(letters);
        }
        let start_key = tagged(TAG_DEAD_LETTER, &start.to_be_bytes());
        scan(&self.inner.db, &[TAG_DEAD_LETTER], &start_key, None, |key, value| {
            let number =
                read_u64(&key[1..]).ok_or_else(|| StoreError::corrupt(key, "dead letter key has no number"))?;
            let letter: DeadLetter =
                serde_json::from_slice(value).map_err(|e| StoreError::corrupt(key, format!("dead letter: {e}")))?;
            letters.push((number, letter));
            Ok(letters.len() < limit)
        })?;
        Ok(letters)
    }

    /// The letter numbered `number`, if recorded.
    pub fn get(&self, number: u64) -> Result<Option<DeadLetter>, StoreError> {
        let key = tagged(TAG_DEAD_LETTER, &number.to_be_bytes());
        match self.inner.db.get_pinned(&key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::corrupt(&key, format!("dead letter: {e}"))),
        }
    }

    /// Adds `replay` to letter `number`'s replays, durably. The letter
    /// itself stays: replayed letters are marked, never removed.
    pub fn mark_replayed(&self, number: u64, replay: Replay) -> Result<(), StoreError> {
        // Serialised with `record`, so two marks never lose one another.
        let _state = lock(&self.inner.state);
        let key = tagged(TAG_DEAD_LETTER, &number.to_be_bytes());
        let Some(v) = self.inner.db.get_pinned(&key)? else {
            return Err(StoreError::corrupt(&key, "no such dead letter"));
        };
        let mut letter: DeadLetter =
            serde_json::from_slice(&v).map_err(|e| StoreError::corrupt(&key, format!("dead letter: {e}")))?;
        letter.replays.push(replay);
        let json = serde_json::to_vec(&letter).map_err(|e| StoreError::Encode {
            what: format!("dead letter {}", letter.id),
            reason: e.to_string(),
        })?;
        let mut batch = WriteBatch::default();
        batch.put(key, json);
        write_durably(&self.inner.db, batch)
    }

    /// How many letters each source has recorded (never decreases).
    pub fn count_by_source(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.state).counts.clone()
    }

    /// How many letters are recorded in all.
    pub fn len(&self) -> u64 {
        lock(&self.inner.state).next_number
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("count_by_source", &self.count_by_source())
            .finish()
    }
}
