//! The durable job store: a map from job name to an opaque spec (the
//! binary stores the job's SQL and whatever else it needs to re-install it).
//!
//! Jobs may read tables and views that earlier jobs created, so a restarted
//! engine must re-install them in the order they were first created:
//! [`JobStore::jobs`] returns that order. Replacing a job keeps its place;
//! deleting it and creating it again puts it last.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rocksdb::{WriteBatch, DB};

use crate::keys::{read_u64, TAG_JOB};
use crate::rocks::{scan, write_durably, StoreError};
use crate::sync::lock;

/// Handle to the job store. Cheap to clone; `Send + Sync`.
///
/// The job store is small (one entry per job), so it is mirrored in memory and
/// reads never touch RocksDB; every change is written through durably.
#[derive(Clone)]
pub struct JobStore {
    inner: Arc<JobStoreInner>,
}

struct JobStoreInner {
    db: Arc<DB>,
    state: Mutex<JobStoreState>,
}

struct JobStoreState {
    /// name → (creation number, spec).
    jobs: BTreeMap<String, (u64, Vec<u8>)>,
    next_creation: u64,
}

fn job_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(TAG_JOB);
    key.extend_from_slice(name.as_bytes());
    key
}

impl JobStore {
    pub(crate) fn recover(db: Arc<DB>) -> Result<JobStore, StoreError> {
        let mut jobs = BTreeMap::new();
        let mut next_creation = 0;
        scan(&db, &[TAG_JOB], &[TAG_JOB], None, |key, value| {
            let name = std::str::from_utf8(&key[1..]).map_err(|_| StoreError::corrupt(key, "job name is not UTF-8"))?;
            let creation = read_u64(value).ok_or_else(|| StoreError::corrupt(key, "job has no creation number"))?;
            next_creation = next_creation.max(creation + 1);
            jobs.insert(name.to_string(), (creation, value[8..].to_vec()));
            Ok(true)
        })?;
        Ok(JobStore {
            inner: Arc::new(JobStoreInner {
                db,
                state: Mutex::new(JobStoreState { jobs, next_creation }),
            }),
        })
    }

    /// Creates or replaces job `name`, durably. A replaced job keeps its
    /// place in [`JobStore::jobs`].
    pub fn put_job(&self, name: &str, spec: &[u8]) -> Result<(), StoreError> {
        let mut state = lock(&self.inner.state);
        let creation = match state.jobs.get(name) {
            Some((creation, _)) => *creation,
            None => state.next_creation,
        };
        let mut value = Vec::with_capacity(8 + spec.len());
        value.extend_from_slice(&creation.to_be_bytes());
        value.extend_from_slice(spec);
        let mut batch = WriteBatch::default();
        batch.put(job_key(name), value);
        write_durably(&self.inner.db, batch)?;
        state.next_creation = state.next_creation.max(creation + 1);
        state.jobs.insert(name.to_string(), (creation, spec.to_vec()));
        Ok(())
    }

    /// Deletes job `name`, durably. Returns whether it existed.
    pub fn delete_job(&self, name: &str) -> Result<bool, StoreError> {
        let mut state = lock(&self.inner.state);
        if !state.jobs.contains_key(name) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete(job_key(name));
        write_durably(&self.inner.db, batch)?;
        state.jobs.remove(name);
        Ok(true)
    }

    /// The spec of job `name`, if it exists.
    pub fn job(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.inner.state).jobs.get(name).map(|(_, spec)| spec.clone())
    }

    /// All jobs as (name, spec), in the order they were first created.
    pub fn jobs(&self) -> Vec<(String, Vec<u8>)> {
        let state = lock(&self.inner.state);
        let mut jobs: Vec<(u64, &String, &Vec<u8>)> = state
            .jobs
            .iter()
            .map(|(name, (creation, spec))| (*creation, name, spec))
            .collect();
        jobs.sort_by_key(|(creation, _, _)| *creation);
        jobs.into_iter()
            .map(|(_, name, spec)| (name.clone(), spec.clone()))
            .collect()
    }
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.jobs().into_iter().map(|(name, _)| name).collect();
        f.debug_struct("JobStore").field("jobs", &names).finish()
    }
}
