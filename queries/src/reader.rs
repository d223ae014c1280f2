//! Reading views at a consistent time: choosing the `as_of` (complete on
//! every worker, after every token), holding it against compaction,
//! collecting every worker's part of the answer, and planning again when
//! the view is replaced meanwhile. The engine supplies what only it knows
//! through [`ReadContext`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_dataflows::catalog::DataflowId;
use weir_dataflows::sql::PeekPlan;
use weir_operators::repr::{Diff, Row, Schema, Tick};

use crate::copies::CopyHandle;
use crate::copy_read::read_copy;
use crate::error::ReadError;
use crate::eval::finish;
use crate::filter::ViewFilter;
use crate::frontiers::Frontiers;
use crate::pending::{PeekCommand, PeekError, PendingPeeks};
use crate::token::Token;

/// Reads planned again when their view is replaced meanwhile, at most.
const REPLAN_ATTEMPTS: usize = 5;

/// How a read chooses its time.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Writes the answer must reflect.
    pub after: Vec<Token>,
    /// Read exactly as of this time (e.g. the `as_of` of another answer, to
    /// read several views consistently).
    pub as_of: Option<Tick>,
    /// How long to wait for `after` and `as_of`.
    pub timeout: Duration,
}

/// An answer read from a view: its rows at `as_of`, with the columns
/// they have.
pub struct ViewAnswer {
    pub view: String,
    pub as_of: Tick,
    pub schema: Arc<Schema>,
    pub rows: Vec<Row>,
}

/// How a read was answered, for its metrics: `path` is `index` (a key
/// lookup), `scan` or `query` (`POST /v1/query`); `via` is `copy` (the
/// read-optimised copy) or `workers` (the command stream).
#[derive(Clone, Copy, Debug)]
pub struct ReadPath {
    pub path: &'static str,
    pub via: &'static str,
}

/// One installed version of a view, as the catalog has it now.
pub struct ViewVersion {
    pub df: DataflowId,
    /// Shared, not copied: a read looks at its view's version several times.
    pub schema: Arc<Schema>,
    pub key: Option<Vec<usize>>,
    /// Dataflows whose sources feed the view (its own and imported ones):
    /// a token is reflected once each of them processed it.
    pub closure: Arc<BTreeSet<DataflowId>>,
}

/// What a read needs from the engine.
pub trait ReadContext {
    /// The view's current version; `NotFound` for a table or an unknown name.
    fn view(&self, name: &str) -> Result<ViewVersion, ReadError>;
    /// Plans a one-view SELECT against the catalog's views, bound to the
    /// view's current version.
    fn plan_query(&self, sql: &str) -> Result<(PeekPlan, DataflowId), ReadError>;
    /// The tick at which the write a token names is in the log (`None`
    /// while it is not).
    fn written_at(&self, token: &Token) -> Option<Tick>;
    /// The time at which dataflow `df` processes a record appended at `tick`.
    fn fed_in(&self, df: DataflowId, tick: Tick) -> Tick;
    /// Sends a peek to every worker through the command stream.
    fn send_peek(&self, peek: PeekCommand) -> Result<(), ReadError>;
    fn frontiers(&self) -> &Arc<Frontiers>;
    fn pending(&self) -> &PendingPeeks;
    fn workers(&self) -> usize;
    /// Counts a read's outcome ("ok", "error", "timeout") by how it was
    /// answered and, when it ended with an answer or an error, how long it
    /// took.
    fn observe_peek(&self, view: &str, how: ReadPath, outcome: &str, seconds: Option<f64>);
    /// The read-optimised copy of version `df` of the view, if it has one
    /// (reads then answer from it, not through the workers).
    fn read_copy(&self, _df: DataflowId, _view: &str) -> Option<CopyHandle> {
        None
    }
}

/// Reads a view: rows whose columns equal `filters`, at most `limit`,
/// reflecting every write in `opts.after`.
pub async fn read_view(
    ctx: &impl ReadContext,
    view: &str,
    filters: &[(String, String)],
    limit: Option<usize>,
    opts: &ReadOptions,
) -> Result<ViewAnswer, ReadError> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read_view_once(ctx, view, filters, limit, opts, started).await {
            Err(ReadError::Replaced(_)) if attempt < REPLAN_ATTEMPTS => continue,
            other => return other,
        }
    }
}

/// One attempt of [`read_view`], planned against the view's current
/// version: filters are resolved against its columns.
async fn read_view_once(
    ctx: &impl ReadContext,
    view: &str,
    filters: &[(String, String)],
    limit: Option<usize>,
    opts: &ReadOptions,
    started: Instant,
) -> Result<ViewAnswer, ReadError> {
    let version = ctx.view(view)?;
    let filter = ViewFilter::bind(view, &version.schema, filters)?;
    // A filter on every key column is served from the index.
    let key = filter.index_key(version.key.as_deref());
    let path = if key.is_some() { "index" } else { "scan" };
    let (as_of, rows) = peek(ctx, view, version.df, key, path, opts, started).await?;
    Ok(ViewAnswer {
        view: view.to_string(),
        as_of,
        rows: filter.apply(rows, limit),
        schema: version.schema,
    })
}

/// `POST /v1/query`: one SELECT over one view.
pub async fn query(ctx: &impl ReadContext, sql: &str, opts: &ReadOptions) -> Result<ViewAnswer, ReadError> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match query_once(ctx, sql, opts, started).await {
            Err(ReadError::Replaced(_)) if attempt < REPLAN_ATTEMPTS => continue,
            other => return other,
        }
    }
}

async fn query_once(
    ctx: &impl ReadContext,
    sql: &str,
    opts: &ReadOptions,
    started: Instant,
) -> Result<ViewAnswer, ReadError> {
    // Planned and bound to the view's current version in one look at the
    // catalog.
    let (plan, df) = ctx.plan_query(sql)?;
    let (as_of, rows) = peek(ctx, &plan.view, df, None, "query", opts, started).await?;
    let rows = finish(&plan, rows).map_err(|e| ReadError::BadRequest {
        code: "evaluation_error",
        message: e.to_string(),
    })?;
    Ok(ViewAnswer {
        view: plan.view.clone(),
        as_of,
        schema: Arc::new(Schema {
            columns: plan.columns.clone(),
        }),
        rows,
    })
}

/// The earliest time a read of `version` may be answered at: after every
/// write in `after` (their append ticks are looked up in the log once each,
/// into `appended`); `None` while some write is not in the log yet.
pub(crate) fn required_time(
    ctx: &impl ReadContext,
    version: &ViewVersion,
    after: &[Token],
    appended: &mut [Option<Tick>],
) -> Option<Tick> {
    for (tick, t) in appended.iter_mut().zip(after) {
        if tick.is_none() {
            *tick = ctx.written_at(t);
        }
    }
    appended.iter().try_fold(0, |r: Tick, tick| {
        let tick = (*tick)?;
        Some(
            version
                .closure
                .iter()
                .map(|df| ctx.fed_in(*df, tick))
                .fold(r, Tick::max),
        )
    })
}

/// The error of a read that waited `timeout` for its time in vain.
pub(crate) fn timed_out(view: &str, complete: Option<Tick>, timeout: Duration) -> ReadError {
    ReadError::Timeout(match complete {
        None => format!(
            "view {view} has not produced its first complete time within {} ms",
            timeout.as_millis()
        ),
        Some(_) => format!(
            "view {view} did not reflect the given writes within {} ms; retry with a larger timeout_ms",
            timeout.as_millis()
        ),
    })
}

/// Chooses the read time (complete on every worker, after every token),
/// then collects every worker's part of version `df` of the view as of
/// it; only the rows under `key` of its index when given.
/// [`ReadError::Replaced`] when the view is no longer at version `df`.
#[allow(clippy::too_many_arguments)]
pub async fn peek(
    ctx: &impl ReadContext,
    view: &str,
    df: DataflowId,
    key: Option<Row>,
    path: &'static str,
    opts: &ReadOptions,
    started: Instant,
) -> Result<(Tick, Vec<(Row, Diff)>), ReadError> {
    let timeout = opts.timeout;
    let deadline = started + timeout;
    let current = || {
        let v = ctx.view(view)?;
        if v.df == df {
            Ok(v)
        } else {
            Err(ReadError::Replaced(view.to_string()))
        }
    };
    let mut version = current()?;
    if let Some(handle) = ctx.read_copy(version.df, view) {
        let how = ReadPath { path, via: "copy" };
        if let Some(answer) = read_copy(ctx, &handle, view, version.df, key.as_ref(), how, opts, started).await? {
            return Ok(answer);
        }
    }
    let how = ReadPath { path, via: "workers" };
    // The read time, held until the rows are collected so that no worker
    // compacts its trace past it meanwhile.
    // The append ticks of the `after` records, looked up in the log once
    // each (a record not there yet is looked up again while waiting).
    let mut appended: Vec<Option<Tick>> = vec![None; opts.after.len()];
    let hold = loop {
        if let Some(r) = required_time(ctx, &version, &opts.after, &mut appended) {
            match ctx.frontiers().hold_read(version.df, view, r, opts.as_of) {
                Ok(Some(hold)) => break hold,
                Ok(None) => {}
                Err(since) => {
                    return Err(ReadError::BadRequest {
                        code: "as_of_too_old",
                        message: format!(
                            "view {view} no longer keeps the history of as_of={}: the earliest time it can be read at is {since}",
                            opts.as_of.unwrap_or(0)
                        ),
                    })
                }
            }
        }
        if Instant::now() >= deadline {
            ctx.observe_peek(view, how, "timeout", None);
            let complete = ctx.frontiers().complete_through(version.df, view);
            return Err(timed_out(view, complete, timeout));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        version = current()?;
    };
    let as_of = hold.at;
    let (id, mut rx) = ctx.pending().open();
    let result = async {
        ctx.send_peek(PeekCommand {
            id,
            df: version.df,
            view: view.to_string(),
            as_of,
            key,
        })?;
        let mut rows = Vec::new();
        for _ in 0..ctx.workers() {
            let reply = tokio::time::timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1)),
                rx.recv(),
            )
            .await
            .map_err(|_| ReadError::Timeout(format!("reading view {view} timed out")))?
            .ok_or_else(|| ReadError::Internal("the dataflow workers have stopped".into()))?;
            // A worker finds the dataflow gone when a replace swapped it
            // out after the read time was chosen.
            rows.extend(reply.map_err(|e: PeekError| match current() {
                Err(replaced @ ReadError::Replaced(_)) => replaced,
                _ => ReadError::NotFound(e.to_string()),
            })?);
        }
        Ok(rows)
    }
    .await;
    ctx.pending().close(id);
    drop(hold);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.observe_peek(view, how, outcome, Some(started.elapsed().as_secs_f64()));
    Ok((as_of, result?))
}
