//! Small durable settings of the connectors by key (e.g. where a Kafka
//! source started, how far a sink has written), stored in the
//! [`StateStore`](crate::store::StateStore).

use std::sync::Arc;

use rocksdb::{WriteBatch, DB};

use crate::keys::TAG_META;
use crate::rocks::{write_durably, StoreError};

/// Small durable values by key (see
/// [`StateStore::meta`](crate::store::StateStore::meta)). Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    db: Arc<DB>,
}

impl Meta {
    pub(crate) fn new(db: Arc<DB>) -> Meta {
        Meta { db }
    }

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

    /// Adds writing `key` = `value` to `batch` (written with the rest of it).
    pub(crate) fn put_in(&self, batch: &mut WriteBatch, key: &str, value: &[u8]) {
        batch.put(Self::key(key), value);
    }

    /// Writes durably: on disk when this returns.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(Self::key(key), value);
        write_durably(&self.db, batch)
    }
}
