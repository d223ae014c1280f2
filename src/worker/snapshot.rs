//! `Command::Snapshot`: this worker's part of a snapshot, read from the
//! dataflow's cuts once they have completed its time; and restoring a
//! snapshot into a dataflow's cuts at install.

use std::time::Instant;

use weir_dataflows::catalog::DataflowId;
use weir_dataflows::render::cut::{Cuts, StateSource};

use super::command::{RestorePoint, SnapshotCommand};
use super::WorkerState;
use crate::snapshots::{Restored, SnapshotPart};

/// Announces the snapshot to the dataflow's cuts (the operators with their
/// own state write it down as they pass its time), then reads it once every
/// cut is ready.
pub fn receive(state: &mut WorkerState, cmd: SnapshotCommand) {
    if let Some(d) = state.dataflows.get_mut(&cmd.df) {
        for c in d.cuts.iter_mut() {
            c.request(cmd.at);
        }
    }
    state.shared.snapshots.requested(&cmd.job, cmd.number);
    state.pending_snapshots.push(cmd);
    read_pending(state);
}

/// Reads the snapshots whose time every cut on this worker has completed.
pub fn read_pending(state: &mut WorkerState) {
    if state.pending_snapshots.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut state.pending_snapshots);
    for cmd in pending {
        let entries = match state.dataflows.get_mut(&cmd.df) {
            None => Err(format!("dataflow {} was dropped", cmd.df)),
            Some(d) => {
                // Its sources have read everything through the time (so a
                // job without views, which only decodes, has recorded its
                // dead letters), and every cut can be read at it.
                let complete =
                    d.sources.iter().all(|s| s.input.time() > cmd.at) && d.cuts.iter_mut().all(|c| c.ready(cmd.at));
                if !complete {
                    state.pending_snapshots.push(cmd);
                    continue;
                }
                if d.cuts_since > cmd.at {
                    Err(format!(
                        "worker {} compacted past the snapshot's time {} (to {})",
                        state.index, cmd.at, d.cuts_since
                    ))
                } else {
                    let mut entries = Vec::new();
                    let mut failed = None;
                    for (i, c) in d.cuts.iter_mut().enumerate() {
                        if failed.is_some() {
                            c.cancel(cmd.at);
                            continue;
                        }
                        if let Err(e) = c.read_at(cmd.at, &mut |bytes| entries.push((i as u32, bytes))) {
                            failed = Some(e.to_string());
                        }
                    }
                    failed.map_or(Ok(entries), Err)
                }
            }
        };
        state.shared.snapshots.hand_over(SnapshotPart {
            job: cmd.job,
            number: cmd.number,
            part: state.index as u32,
            entries,
        });
    }
}

/// Reads one cut's entries from every part of a snapshot: for operators
/// that restore their own state and keep the part of it routed to them.
pub fn state_source(state: &WorkerState, point: &RestorePoint) -> StateSource {
    let store = state.shared.snapshots.store.clone();
    let (job, number, parts) = (point.job.clone(), point.number, point.parts);
    Box::new(move |cut| {
        let mut entries = Vec::new();
        for part in 0..parts {
            store
                .read_part(&job, number, part, &mut |c, e| {
                    if c == cut {
                        entries.push(e.to_vec());
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(entries)
    })
}

/// Feeds this worker's share of a snapshot's parts into the dataflow's
/// restore inputs: part `p` goes to worker `p % peers`, whatever the worker
/// count the snapshot was written with (every cut is exchanged by key
/// downstream).
pub fn restore(state: &WorkerState, df: DataflowId, point: &RestorePoint, cuts: &mut Cuts) {
    let job = point.job.as_str();
    let started = Instant::now();
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut error = None;
    for part in (state.index as u32..point.parts).step_by(state.peers.max(1)) {
        let read = state
            .shared
            .snapshots
            .store
            .read_part(job, point.number, part, &mut |cut, entry| {
                if error.is_some() {
                    return;
                }
                entries += 1;
                bytes += entry.len() as u64;
                match cuts.restores.get_mut(cut as usize) {
                    Some(input) => {
                        if let Err(e) = input.push(point.at, entry) {
                            error = Some(e.to_string());
                        }
                    }
                    None => {
                        error = Some(format!(
                            "snapshot entry for cut {cut}, which the dataflow does not have"
                        ))
                    }
                }
            });
        if let Err(e) = read {
            error.get_or_insert_with(|| e.to_string());
        }
    }
    if error.is_none() {
        error = cuts.restore_error.take();
    }
    if let Some(e) = &error {
        eprintln!(
            "weir: restoring job {job} from snapshot {} failed on worker {}: {e}",
            point.number, state.index
        );
    }
    let base = Restored {
        number: point.number,
        at: point.at,
        ..Restored::default()
    };
    state
        .shared
        .snapshots
        .restored_part(df, &base, entries, bytes, started.elapsed().as_millis() as u64, error);
}
