//! Snapshots, the control plane's side: choosing a job's snapshot time and
//! holding its history there, asking the workers to read it, every
//! `--snapshot-interval` and on a clean stop; and at start, choosing the
//! snapshot a job restores from (DESIGN.md §4, "Durable state").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_connectors::snapshots::SnapshotManifest;
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::plan::{SinkPlan, TablePlan, ViewPlan};
use weir_dataflows::render::cut::SNAPSHOT_FORMAT;
use weir_operators::repr::Tick;

use super::{Engine, EngineError};
use crate::shared::{lock, now_ms, sink_key};
use crate::worker::{Command, RestorePoint, SnapshotCommand};

/// How far ahead of the log's clock a snapshot's time is chosen: the
/// workers must get the request before their dataflows pass that time.
const SNAPSHOT_LEAD_MS: Tick = 300;

/// What the snapshot code needs to know of an installed dataflow.
#[derive(Clone, Debug)]
pub(super) struct SnapshotKey {
    pub fingerprint: u64,
    /// Its feeding's `since`: before it, history is fed at coarse times, so
    /// only a time at or after it is a cut between "read" and "not read"
    /// that a restart can resume at by tick.
    pub since: Tick,
}

/// What asking for a snapshot did.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SnapshotOutcome {
    /// The workers are reading it; the writer commits it.
    Started { number: u64, at: Tick },
    /// Nothing was asked of the workers, for this reason.
    Skipped { reason: String },
}

/// A job's snapshots in its status.
#[derive(Debug, Serialize)]
pub struct SnapshotStatus {
    /// Why the job's dataflow cannot be snapshotted (it replays on restart).
    pub unsupported: Option<String>,
    pub last: Option<SnapshotManifest>,
    /// Milliseconds between now and the last snapshot's time.
    pub age_ms: Option<u64>,
    pub last_failure: Option<String>,
    /// What this run restored the job from.
    pub restored: Option<RestoredStatus>,
}

#[derive(Debug, Serialize)]
pub struct RestoredStatus {
    pub number: u64,
    pub at: Tick,
    pub entries: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// False while workers are still feeding their parts.
    pub complete: bool,
    pub error: Option<String>,
}

/// FNV-1a, 64 bits: a fingerprint that stays the same across builds and
/// platforms (std's hasher promises neither).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of what a job's dataflow computes: its sources, views,
/// the names of the views it imports, its sinks and where it starts.
pub(super) fn fingerprint(
    sources: &[TablePlan],
    views: &[ViewPlan],
    imports: &[(String, DataflowId)],
    sinks: &[SinkPlan],
    skip_before: Tick,
) -> Result<u64, EngineError> {
    let imports: Vec<&String> = imports.iter().map(|(v, _)| v).collect();
    let json = serde_json::to_vec(&(sources, views, imports, sinks, skip_before))
        .map_err(|e| EngineError::Internal(format!("cannot fingerprint a plan: {e}")))?;
    Ok(fnv1a(&json))
}

impl Engine {
    /// Whether jobs restored at start resume from their snapshots (`weir
    /// serve --replay` turns it off).
    pub fn restore_snapshots(&self, on: bool) {
        self.restore_snapshots.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The newest stored snapshot of `job` that fits its plan, if any; the
    /// others are ignored with a log line (the job then replays).
    pub(super) fn choose_restore(&self, job: &str, fingerprint: u64) -> Option<RestorePoint> {
        if !self.restore_snapshots.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let manifests = match self.shared.snapshots.store.manifests(job) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("weir: job {job}: cannot read its snapshots, replaying: {e}");
                return None;
            }
        };
        for m in manifests {
            if m.format != SNAPSHOT_FORMAT {
                eprintln!(
                    "weir: job {job}: snapshot {} has format {}, this build writes {SNAPSHOT_FORMAT}: ignored",
                    m.number, m.format
                );
                continue;
            }
            if m.fingerprint != fingerprint {
                eprintln!(
                    "weir: job {job}: snapshot {} was taken of another plan of the job: ignored",
                    m.number
                );
                continue;
            }
            let point = RestorePoint {
                job: job.to_string(),
                number: m.number,
                at: m.at,
                parts: m.parts,
            };
            self.shared.snapshots.set_last(job, m);
            return Some(point);
        }
        None
    }

    /// Asks the workers for a snapshot of the job at a time a little ahead
    /// of the log's clock; they read it once they have passed that time,
    /// the writer commits it once the job's sinks have too.
    pub fn snapshot(&self, job: &str) -> Result<SnapshotOutcome, EngineError> {
        let skipped = |reason: &str| Ok(SnapshotOutcome::Skipped { reason: reason.into() });
        let (df, sinks) = {
            let cat = lock(&self.catalog);
            let j = cat.jobs.get(job).ok_or_else(|| EngineError::no_job(job))?;
            (j.df, j.plan.sinks.clone())
        };
        let Some(key) = lock(&self.snapshot_keys).get(&df).cloned() else {
            return skipped("the job is not installed yet");
        };
        let hub = &self.shared.snapshots;
        match hub.support(df) {
            None => return skipped("the job's dataflow is not built yet"),
            Some(Err(why)) => return Ok(SnapshotOutcome::Skipped { reason: why }),
            Some(Ok(())) => {}
        }
        if hub.in_progress(job) {
            return skipped("a snapshot of the job is being written");
        }
        // A time ahead of everything the dataflow has processed, so that
        // operators with their own state can write it down as they pass it.
        let at = self.shared.log.now().max(key.since) + SNAPSHOT_LEAD_MS;
        let last = hub.last(job);
        let sinks: Vec<_> = {
            let writers = self.shared.connectors.sinks();
            sinks
                .iter()
                .filter_map(|s| writers.get(&sink_key(s)).map(|w| Arc::clone(&w.status)))
                .collect()
        };
        // The snapshot would wait for them to write through its time.
        if sinks
            .iter()
            .any(|s| s.failing.load(std::sync::atomic::Ordering::SeqCst))
        {
            return skipped("a sink of the job is failing: its changes are not written through yet");
        }
        let stored = hub
            .store
            .last_number(job)
            .map_err(|e| EngineError::Internal(format!("cannot read the snapshots of job {job}: {e}")))?;
        let number = stored.max(last.map_or(0, |m| m.number)) + 1;
        let manifest = SnapshotManifest {
            number,
            format: SNAPSHOT_FORMAT,
            fingerprint: key.fingerprint,
            at,
            parts: self.shared.workers as u32,
            entries: 0,
            bytes: 0,
            written_ms: 0,
            write_ms: 0,
        };
        hub.begin(job, manifest, sinks);
        self.send(Command::Snapshot(SnapshotCommand {
            df,
            job: job.to_string(),
            number,
            at,
        }))?;
        Ok(SnapshotOutcome::Started { number, at })
    }

    /// Asks for a snapshot of every job; the outcome per job.
    pub fn snapshot_all(&self) -> HashMap<String, SnapshotOutcome> {
        let jobs: Vec<String> = lock(&self.catalog).jobs.keys().cloned().collect();
        jobs.into_iter()
            .map(|j| {
                let outcome = self
                    .snapshot(&j)
                    .unwrap_or_else(|e| SnapshotOutcome::Skipped { reason: e.to_string() });
                (j, outcome)
            })
            .collect()
    }

    /// Snapshots every job every `every`, in the background.
    pub fn start_snapshots(self: &Arc<Self>, every: Duration) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let e = Arc::clone(&engine);
                let _ = tokio::task::spawn_blocking(move || e.snapshot_all()).await;
            }
        });
    }

    /// The job's snapshot status (see [`SnapshotStatus`]).
    pub(super) fn snapshot_status(&self, job: &str, df: DataflowId) -> SnapshotStatus {
        let hub = &self.shared.snapshots;
        let last = hub.last(job);
        SnapshotStatus {
            unsupported: hub.support(df).and_then(|s| s.err()),
            age_ms: last.as_ref().map(|m| now_ms().saturating_sub(m.at)),
            last,
            last_failure: hub.last_failure(job),
            restored: hub.restored(df).map(|r| RestoredStatus {
                number: r.number,
                at: r.at,
                entries: r.entries,
                bytes: r.bytes,
                seconds: r.ms as f64 / 1000.0,
                complete: r.workers_done >= self.shared.workers,
                error: r.error,
            }),
        }
    }
}
