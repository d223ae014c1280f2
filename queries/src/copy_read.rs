//! Reading a view from its read-optimised copy, on the caller's thread: the
//! same read times and answers as a read through the workers
//! ([`crate::reader::peek`]), without entering the worker loop. A read that
//! must wait (for a write, or an `as_of` not complete yet) sleeps until a
//! shard of the view publishes, not in a polling loop.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::{Diff, Row, Tick};

use crate::copies::CopyHandle;
use crate::error::ReadError;
use crate::peek::NEGATIVE_MULTIPLICITIES;
use crate::reader::{required_time, timed_out, ReadContext, ReadOptions, ReadPath};

/// Reads version `df` of the view from its copy: its rows (only those
/// under `key` when given) as of the latest time complete in every shard,
/// or exactly `opts.as_of`, after every write in `opts.after`.
/// `Ok(None)` when the copy no longer keeps `opts.as_of`: the workers'
/// traces may still have it. [`ReadError::Replaced`] when the view is no
/// longer at version `df`.
#[allow(clippy::too_many_arguments)]
pub async fn read_copy(
    ctx: &impl ReadContext,
    handle: &CopyHandle,
    view: &str,
    df: DataflowId,
    key: Option<&Row>,
    how: ReadPath,
    opts: &ReadOptions,
    started: Instant,
) -> Result<Option<(Tick, Vec<(Row, Diff)>)>, ReadError> {
    let deadline = started + opts.timeout;
    let mut appended: Vec<Option<Tick>> = vec![None; opts.after.len()];
    loop {
        let version = ctx.view(view)?;
        if version.df != df {
            return Err(ReadError::Replaced(view.to_string()));
        }
        // Registered before looking, so a publish in between is not missed.
        let published = handle.published.notified();
        tokio::pin!(published);
        published.as_mut().enable();
        let versions = handle.copy.load();
        if let Some(exact) = opts.as_of {
            if exact < versions.since() {
                return Ok(None);
            }
        }
        let required = required_time(ctx, &version, &opts.after, &mut appended);
        if let (Some(r), Some(complete)) = (required, versions.complete()) {
            let at = opts.as_of.unwrap_or(complete);
            if r <= at && at <= complete && versions.readable_at(at) {
                let mut rows = Vec::new();
                match key {
                    Some(k) => versions.lookup(at, k, &mut rows),
                    None => versions.0.iter().for_each(|shard| shard.scan(at, &mut rows)),
                }
                let before = rows.len();
                rows.retain(|(_, d)| *d > 0);
                if rows.len() < before {
                    NEGATIVE_MULTIPLICITIES.fetch_add((before - rows.len()) as u64, Ordering::Relaxed);
                }
                ctx.observe_peek(view, how, "ok", Some(started.elapsed().as_secs_f64()));
                return Ok(Some((at, rows)));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            ctx.observe_peek(view, how, "timeout", None);
            return Err(timed_out(view, versions.complete(), opts.timeout));
        }
        // A write not in the log yet is looked up again at the next publish;
        // the views publish as the clock moves, also while idle.
        let wait = (deadline - now).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(wait, published).await;
    }
}
