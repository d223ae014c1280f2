//! Snapshots between the workers and the control plane: which dataflows can
//! be snapshotted, the snapshots being written (their parts arrive from the
//! workers and are written by a thread of their own, so that no worker waits
//! on the disk), what was restored, and the last snapshot of each job.
//!
//! The engine chooses a snapshot's time and holds its views' history there
//! (see `engine::snapshots`); each worker reads its part of every cut at that
//! time and hands it over; the writer writes the parts and, once all are
//! written, the manifest.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_connectors::sink::SinkStatus;
use weir_connectors::snapshots::{SnapshotManifest, Snapshots};
use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::Tick;

use crate::shared::{lock, now_ms, Shared};

/// Entries per chunk written: bounds one RocksDB write.
const CHUNK_BYTES: usize = 1 << 20;

/// One worker's part of a snapshot, or why it could not read it.
pub struct SnapshotPart {
    pub job: String,
    pub number: u64,
    pub part: u32,
    pub entries: Result<Vec<(u32, Vec<u8>)>, String>,
}

/// A snapshot being written.
struct Pending {
    manifest: SnapshotManifest,
    /// Workers that have taken the request in (its operators capture their
    /// state from then on).
    requested: usize,
    parts_done: u32,
    started: Instant,
    /// The job's sinks: the snapshot is committed only once they have
    /// written through its time (a restored sink resumes after what it
    /// recorded, and must not miss changes folded into the snapshot).
    sinks: Vec<Arc<SinkStatus>>,
}

/// How long the writer waits for a job's sinks to reach a snapshot's time.
const SINK_WAIT: Duration = Duration::from_secs(60);

/// What a dataflow restored, over its workers.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub number: u64,
    pub at: Tick,
    pub entries: u64,
    pub bytes: u64,
    /// The slowest worker's time to read and feed its parts.
    pub ms: u64,
    pub workers_done: usize,
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    /// Per installed dataflow: why it cannot be snapshotted (`None`: it can).
    support: HashMap<DataflowId, Option<String>>,
    pending: HashMap<(String, u64), Pending>,
    last: HashMap<String, SnapshotManifest>,
    failed: HashMap<String, String>,
    restored: HashMap<DataflowId, Restored>,
    /// Per job, the last snapshot number handed out in this run.
    numbers: HashMap<String, u64>,
}

pub struct SnapshotHub {
    pub store: Snapshots,
    state: Mutex<State>,
    parts: Mutex<Sender<SnapshotPart>>,
    /// Taken by the writer thread (see [`run_writer`]).
    received: Mutex<Option<Receiver<SnapshotPart>>>,
}

impl SnapshotHub {
    pub fn new(store: Snapshots) -> SnapshotHub {
        let (tx, rx) = std::sync::mpsc::channel();
        SnapshotHub {
            store,
            state: Mutex::default(),
            parts: Mutex::new(tx),
            received: Mutex::new(Some(rx)),
        }
    }

    pub fn set_support(&self, df: DataflowId, unsupported: Option<String>) {
        lock(&self.state).support.insert(df, unsupported);
    }

    /// `None` until the dataflow is installed; `Some(Err(why))` when it
    /// cannot be snapshotted.
    pub fn support(&self, df: DataflowId) -> Option<Result<(), String>> {
        lock(&self.state).support.get(&df).map(|u| match u {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        })
    }

    /// Starts tracking a snapshot the workers were asked to read.
    pub fn begin(&self, job: &str, manifest: SnapshotManifest, sinks: Vec<Arc<SinkStatus>>) {
        lock(&self.state).pending.insert(
            (job.to_string(), manifest.number),
            Pending {
                manifest,
                requested: 0,
                parts_done: 0,
                started: Instant::now(),
                sinks,
            },
        );
    }

    /// A worker has taken in the request for a snapshot.
    pub fn requested(&self, job: &str, number: u64) {
        if let Some(p) = lock(&self.state).pending.get_mut(&(job.to_string(), number)) {
            p.requested += 1;
        }
    }

    /// How many workers have taken in the request (`None`: it is no longer
    /// pending).
    pub fn requests_taken(&self, job: &str, number: u64) -> Option<usize> {
        lock(&self.state)
            .pending
            .get(&(job.to_string(), number))
            .map(|p| p.requested)
    }

    /// A new snapshot number for the job, after `stored` (its newest
    /// committed one) and after every number this run handed out, also to
    /// snapshots that failed (their chunks may not all be gone).
    pub fn next_number(&self, job: &str, stored: u64) -> u64 {
        let mut st = lock(&self.state);
        let n = st.numbers.entry(job.to_string()).or_insert(0);
        *n = (*n).max(stored) + 1;
        *n
    }

    /// Whether a snapshot of the job is being written.
    pub fn in_progress(&self, job: &str) -> bool {
        lock(&self.state).pending.keys().any(|(j, _)| j == job)
    }

    pub fn hand_over(&self, part: SnapshotPart) {
        let _ = lock(&self.parts).send(part);
    }

    /// The job's last committed snapshot (this run's, or the one it
    /// restored from).
    pub fn last(&self, job: &str) -> Option<SnapshotManifest> {
        lock(&self.state).last.get(job).cloned()
    }

    pub fn set_last(&self, job: &str, manifest: SnapshotManifest) {
        lock(&self.state).last.insert(job.to_string(), manifest);
    }

    pub fn last_failure(&self, job: &str) -> Option<String> {
        lock(&self.state).failed.get(job).cloned()
    }

    /// Forgets a dropped dataflow.
    pub fn forget(&self, df: DataflowId) {
        let mut st = lock(&self.state);
        st.support.remove(&df);
        st.restored.remove(&df);
    }

    /// Forgets a dropped job's snapshot status.
    pub fn forget_job(&self, job: &str) {
        let mut st = lock(&self.state);
        st.last.remove(job);
        st.failed.remove(job);
        st.pending.retain(|(j, _), _| j != job);
    }

    /// One worker finished feeding its parts of a restored snapshot.
    pub fn restored_part(
        &self,
        df: DataflowId,
        base: &Restored,
        entries: u64,
        bytes: u64,
        ms: u64,
        error: Option<String>,
    ) {
        let mut st = lock(&self.state);
        let r = st.restored.entry(df).or_insert_with(|| base.clone());
        r.entries += entries;
        r.bytes += bytes;
        r.ms = r.ms.max(ms);
        r.workers_done += 1;
        if error.is_some() {
            r.error = error;
        }
    }

    pub fn restored(&self, df: DataflowId) -> Option<Restored> {
        lock(&self.state).restored.get(&df).cloned()
    }

    /// Waits (up to `within`) until no snapshot is being written.
    pub fn wait_idle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if lock(&self.state).pending.is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// Writes the parts the workers hand over, and each snapshot's manifest
/// once its last part is written, on a thread of its own; it ends with the
/// process. `stall`: a fault-injection pause between the last part and the
/// manifest (tests kill the process there).
///
/// The thread does not keep the engine's shared state alive: it ends when
/// that is dropped (with it the parts' sender), so the store can close.
pub fn start_writer(shared: Arc<Shared>, stall: Duration) -> std::io::Result<()> {
    let Some(parts) = lock(&shared.snapshots.received).take() else {
        return Ok(());
    };
    let shared = Arc::downgrade(&shared);
    std::thread::Builder::new()
        .name("weir-snapshots".into())
        .spawn(move || run_writer(&shared, parts, stall))
        .map(|_| ())
}

fn run_writer(shared: &std::sync::Weak<Shared>, parts: Receiver<SnapshotPart>, stall: Duration) {
    for part in parts {
        let Some(shared) = shared.upgrade() else { return };
        let hub = &shared.snapshots;
        let metrics = &shared.metrics;
        {
            let key = (part.job.clone(), part.number);
            let written = match part.entries {
                Ok(entries) => write_part(&hub.store, &part.job, part.number, part.part, entries),
                Err(e) => Err(e),
            };
            let mut st = lock(&hub.state);
            let Some(p) = st.pending.get_mut(&key) else {
                continue;
            };
            let (entries, bytes) = match written {
                Ok(n) => n,
                Err(e) => {
                    st.pending.remove(&key);
                    st.failed.insert(part.job.clone(), e.clone());
                    drop(st);
                    eprintln!("weir: snapshot {} of job {} failed: {e}", part.number, part.job);
                    let _ = hub.store.discard(&part.job, part.number);
                    continue;
                }
            };
            p.manifest.entries += entries;
            p.manifest.bytes += bytes;
            p.parts_done += 1;
            if p.parts_done < p.manifest.parts {
                continue;
            }
            let Some(mut done) = st.pending.remove(&key) else {
                continue;
            };
            drop(st);
            if !stall.is_zero() {
                std::thread::sleep(stall);
            }
            let deadline = Instant::now() + SINK_WAIT;
            let behind = |s: &Arc<SinkStatus>| s.settled.load(std::sync::atomic::Ordering::SeqCst) <= done.manifest.at;
            while done.sinks.iter().any(behind) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if done.sinks.iter().any(behind) {
                let e = format!(
                    "its sinks did not write through {} within {SINK_WAIT:?}",
                    done.manifest.at
                );
                eprintln!(
                    "weir: snapshot {} of job {} abandoned: {e}",
                    done.manifest.number, part.job
                );
                lock(&hub.state).failed.insert(part.job.clone(), e);
                let _ = hub.store.discard(&part.job, done.manifest.number);
                continue;
            }
            done.manifest.written_ms = now_ms();
            done.manifest.write_ms = done.started.elapsed().as_millis() as u64;
            let job = part.job;
            match hub.store.commit(&job, &done.manifest) {
                Ok(()) => {
                    let m = &done.manifest;
                    let labels = [job.as_str()];
                    metrics.snapshot_at.with_label_values(&labels).set(m.at as i64);
                    metrics.snapshot_bytes.with_label_values(&labels).set(m.bytes as i64);
                    metrics
                        .snapshot_entries
                        .with_label_values(&labels)
                        .set(m.entries as i64);
                    metrics
                        .snapshot_write_seconds
                        .with_label_values(&labels)
                        .set(m.write_ms as f64 / 1000.0);
                    metrics.snapshots_written.with_label_values(&labels).inc();
                    let mut st = lock(&hub.state);
                    st.failed.remove(&job);
                    st.last.insert(job, done.manifest);
                }
                Err(e) => {
                    eprintln!(
                        "weir: snapshot {} of job {job} could not be committed: {e}",
                        done.manifest.number
                    );
                    lock(&hub.state).failed.insert(job.clone(), e.to_string());
                    let _ = hub.store.discard(&job, done.manifest.number);
                }
            }
        }
    }
}

/// Writes one worker's part in chunks; returns (entries, bytes).
fn write_part(
    store: &Snapshots,
    job: &str,
    number: u64,
    part: u32,
    entries: Vec<(u32, Vec<u8>)>,
) -> Result<(u64, u64), String> {
    let n = entries.len() as u64;
    let mut bytes = 0;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    let mut index = 0u32;
    for e in entries {
        chunk_bytes += e.1.len() + 8;
        chunk.push(e);
        if chunk_bytes >= CHUNK_BYTES {
            bytes += store
                .write_chunk(job, number, part, index, &chunk)
                .map_err(|e| e.to_string())?;
            index += 1;
            chunk.clear();
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        bytes += store
            .write_chunk(job, number, part, index, &chunk)
            .map_err(|e| e.to_string())?;
    }
    Ok((n, bytes))
}
