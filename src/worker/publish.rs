//! After each step: the views' evaluation errors to the dead letters, and
//! each view's progress published to the read side, compacting its trace as
//! far as readers allow.

use weir_connectors::dead_letters::DeadLetter;
use weir_operators::repr::Tick;
use weir_queries::peek::allow_compaction;

use super::dataflow::upper;
use super::WorkerState;

/// Evaluation errors of views → dead letters.
pub fn dead_letters(state: &mut WorkerState, now: Tick) {
    let errs: Vec<_> = state.errors.borrow_mut().drain(..).collect();
    for (view, reason, row, diff) in errs {
        if diff <= 0 {
            continue;
        }
        state
            .shared
            .metrics
            .dead_letters
            .with_label_values(&[view.as_str()])
            .inc();
        let payload = format!("{row:?}");
        state.shared.dead_letters.send(DeadLetter {
            id: format!("view:{view}:{reason}:{payload}"),
            source: view,
            position: None,
            payload,
            reason,
            at_ms: now as i64,
            replays: Vec::new(),
        });
    }
}

/// Publishes every view's upper, rows and partial matches; compacts each
/// trace as far as readers allow.
pub fn progress(state: &mut WorkerState) {
    let (index, peers) = (state.index, state.peers);
    let mut fr = state.shared.frontiers.publishing();
    for (df, d) in state.dataflows.iter_mut() {
        for v in d.views.iter_mut() {
            let Some(progress) = fr.get_mut(*df, &v.name) else {
                continue;
            };
            // A trace whose sources ended is complete for all times.
            progress.uppers[index] = Some(upper(&v.upper).unwrap_or(Tick::MAX));
            progress.rows[index] = v.rows.get();
            if !v.patterns.is_empty() {
                let live: usize = v.patterns.iter().map(|s| s.partial_matches.get()).sum();
                progress.partial_matches.get_or_insert_with(|| vec![0; peers])[index] = live as i64;
            }
            // Peeks are answered from this worker's trace as of their time;
            // their readers hold it, so the bound covers them.
            if let Some(bound) = progress.compaction_bound(d.feeding.since) {
                if bound > v.since {
                    v.since = bound;
                    allow_compaction(&mut v.trace, bound);
                }
            }
        }
        // The cuts keep the history their views keep, so that a snapshot
        // can read them at any time a reader (the snapshot's hold) can.
        // A dataflow without views keeps nothing: its cuts follow the
        // snapshots alone.
        let since = d.views.iter().map(|v| v.since).min().unwrap_or(Tick::MAX);
        // Never past a snapshot this worker still has to read.
        let pending = state
            .pending_snapshots
            .iter()
            .filter(|s| s.df == *df)
            .map(|s| s.at)
            .min();
        let since = pending.map_or(since, |p| since.min(p));
        if since > d.cuts_since && since < Tick::MAX {
            d.cuts_since = since;
            for c in d.cuts.iter_mut() {
                c.allow_compaction(since);
            }
        }
    }
}
