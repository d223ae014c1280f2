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

    /// The newest stored snapshot of `job` that fits its plan (this build's
    /// format, `fingerprint`) and is of a time at or before `at_most`; the
    /// others are skipped, with a log line when `log` is set.
    pub(super) fn fitting_snapshot(
        &self,
        job: &str,
        fingerprint: u64,
        at_most: Tick,
        log: bool,
    ) -> Result<Option<(RestorePoint, SnapshotManifest)>, EngineError> {
        let manifests = self
            .shared
            .snapshots
            .store
            .manifests(job)
            .map_err(|e| EngineError::Internal(format!("cannot read the snapshots of job {job}: {e}")))?;
        for m in manifests {
            let why = if m.format != SNAPSHOT_FORMAT {
                format!("has format {}, this build writes {SNAPSHOT_FORMAT}", m.format)
            } else if m.fingerprint != fingerprint {
                "was taken of another plan of the job".to_string()
            } else if m.at > at_most {
                continue;
            } else {
                let point = RestorePoint {
                    job: job.to_string(),
                    number: m.number,
                    at: m.at,
                    parts: m.parts,
                };
                return Ok(Some((point, m)));
            };
            if log {
                eprintln!("weir: job {job}: snapshot {} {why}: ignored", m.number);
            }
        }
        Ok(None)
    }

    /// The snapshot a job restored from the job store at start resumes
    /// from: its newest fitting one, if any (else the job replays).
    pub(super) fn choose_restore(&self, job: &str, fingerprint: u64) -> Option<RestorePoint> {
        if !self.restore_snapshots.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        match self.fitting_snapshot(job, fingerprint, Tick::MAX, true) {
            Ok(Some((point, m))) => {
                self.shared.snapshots.set_last(job, m);
                Some(point)
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("weir: job {job}: {e}; replaying");
                None
            }
        }
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
        let Some(fingerprint) = lock(&self.fingerprints).get(&df).copied() else {
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
        // Also at or after the dataflow's install (the log's clock never
        // goes back): history before that is fed at coarse times, which do
        // not split the log by tick.
        let at = self.shared.log.now() + SNAPSHOT_LEAD_MS;
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
        // Chunks of a snapshot that never got its manifest are removed at
        // open, so the stored manifests and this run's numbers are all the
        // numbers in use.
        let stored = hub
            .store
            .manifests(job)
            .map_err(|e| EngineError::Internal(format!("cannot read the snapshots of job {job}: {e}")))?
            .first()
            .map_or(0, |m| m.number);
        let number = hub.next_number(job, stored);
        let manifest = SnapshotManifest {
            number,
            format: SNAPSHOT_FORMAT,
            fingerprint,
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
