//! Live subscriptions to a view's changes, fed from its read-optimised copy
//! ([`weir_operators::read_copy`]): a snapshot at an `as_of`, then the
//! changes of each completed time, in time order. The subscriber pulls: it
//! reads the updates its copy keeps (the last 2 s), so the engine holds
//! nothing per subscriber beyond its position. One that falls further
//! behind than that is ended ([`Event::End`] with `slow_consumer`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::{Diff, Row, Schema, Tick};

use crate::copies::CopyHandle;
use crate::error::ReadError;
use crate::filter::ViewFilter;
use crate::reader::ReadContext;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The view's rows (those passing the filter) as of `as_of`, with
    /// their multiplicities.
    Snapshot { as_of: Tick, rows: Vec<(Row, Diff)> },
    /// The changes of one completed time, consolidated.
    Changes { as_of: Tick, updates: Vec<(Row, Diff)> },
    /// What was sent so far no longer applies (the view was replaced, or the
    /// resume point is no longer kept): a fresh [`Event::Snapshot`] follows.
    Reset { reason: String },
    /// The subscription ends (the view was dropped, or the subscriber fell
    /// behind).
    End { code: &'static str, message: String },
}

/// One subscriber's position in a view's changes.
pub struct Subscription {
    view: String,
    filters: Vec<(String, String)>,
    df: DataflowId,
    schema: Arc<Schema>,
    filter: ViewFilter,
    handle: CopyHandle,
    /// Changes up to this time have been handed out.
    last: Tick,
    needs_snapshot: bool,
    pending: VecDeque<Event>,
}

/// The longest a subscriber with nothing new sleeps between looks at its
/// copy (publishes and retirement wake it sooner).
const LOOK_AGAIN: Duration = Duration::from_millis(500);

fn copy_of(ctx: &impl ReadContext, view: &str, df: DataflowId) -> Result<CopyHandle, ReadError> {
    ctx.read_copy(df, view).ok_or_else(|| ReadError::BadRequest {
        code: "no_read_copy",
        message: format!("view {view} has no read copy (read_copy = 'off'): its changes cannot be subscribed to"),
    })
}

impl Subscription {
    /// Subscribes to `view`'s rows passing `filters` (column = value). With
    /// `from`, resumes after that time when the view still keeps it (no
    /// snapshot); else starts with a snapshot ([`Event::Reset`] first when
    /// `from` was given but is no longer kept).
    pub fn open(
        ctx: &impl ReadContext,
        view: &str,
        filters: &[(String, String)],
        from: Option<Tick>,
    ) -> Result<Subscription, ReadError> {
        let version = ctx.view(view)?;
        let handle = copy_of(ctx, view, version.df)?;
        let filter = ViewFilter::bind(view, &version.schema, filters)?;
        let mut sub = Subscription {
            view: view.to_string(),
            filters: filters.to_vec(),
            df: version.df,
            schema: version.schema,
            filter,
            handle,
            last: 0,
            needs_snapshot: true,
            pending: VecDeque::new(),
        };
        if let Some(from) = from {
            let versions = sub.handle.copy.load();
            if versions.since() <= from && versions.complete().is_some_and(|c| from <= c) {
                sub.last = from;
                sub.needs_snapshot = false;
            } else {
                sub.pending.push_back(Event::Reset {
                    reason: format!(
                        "view {view} no longer keeps its changes after {from} (it keeps them from {}): starting from a snapshot",
                        versions.since()
                    ),
                });
            }
        }
        Ok(sub)
    }

    /// Whether the next event is a snapshot (after any pending reset).
    pub fn wants_snapshot(&self) -> bool {
        self.needs_snapshot
    }

    /// The view's columns as of the last event handed out.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The next event; waits (without polling) until there is one.
    pub async fn next(&mut self, ctx: &impl ReadContext) -> Event {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            // Only a retired copy (its dataflow replaced or dropped) sends
            // the subscriber to the catalog.
            if self.handle.copy.retired() {
                if let Some(end) = self.follow(ctx) {
                    return end;
                }
            }
            let published = self.handle.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let versions = self.handle.copy.load();
            if let Some(complete) = versions.complete().filter(|c| versions.readable_at(*c)) {
                if self.needs_snapshot {
                    let mut rows = Vec::new();
                    for shard in &versions.0 {
                        shard.scan(complete, &mut rows);
                    }
                    rows.retain(|(r, d)| *d > 0 && self.filter.matches(r));
                    rows.sort();
                    self.needs_snapshot = false;
                    self.last = complete;
                    return Event::Snapshot { as_of: complete, rows };
                }
                if complete > self.last {
                    if self.last < versions.since() {
                        return Event::End {
                            code: "slow_consumer",
                            message: format!(
                                "the subscriber fell behind view {} by more than it keeps (its changes after {} are gone): subscribe again",
                                self.view, self.last
                            ),
                        };
                    }
                    let mut changes = Vec::new();
                    for shard in &versions.0 {
                        shard.changes(self.last, complete, &mut changes);
                    }
                    self.last = complete;
                    self.pending.extend(by_time(changes, &self.filter));
                    continue;
                }
            }
            let _ = tokio::time::timeout(LOOK_AGAIN, published).await;
        }
    }

    /// Follows the view to its current version: after a replace, a reset and
    /// a snapshot of the new one; `Some(End)` when the view is gone.
    fn follow(&mut self, ctx: &impl ReadContext) -> Option<Event> {
        let version = match ctx.view(&self.view) {
            Ok(v) => v,
            Err(e) => {
                return Some(Event::End {
                    code: "view_gone",
                    message: e.to_string(),
                })
            }
        };
        if version.df == self.df {
            return None;
        }
        let handle = match copy_of(ctx, &self.view, version.df) {
            Ok(h) => h,
            Err(e) => {
                return Some(Event::End {
                    code: "no_read_copy",
                    message: e.to_string(),
                })
            }
        };
        let filter = match ViewFilter::bind(&self.view, &version.schema, &self.filters) {
            Ok(f) => f,
            Err(e) => {
                return Some(Event::End {
                    code: "filter_no_longer_fits",
                    message: e.to_string(),
                })
            }
        };
        self.df = version.df;
        self.schema = version.schema;
        self.filter = filter;
        self.handle = handle;
        self.needs_snapshot = true;
        self.pending.push_back(Event::Reset {
            reason: format!(
                "view {} was replaced: starting from a snapshot of the new version",
                self.view
            ),
        });
        None
    }
}

/// The changes that pass `filter`, consolidated per time, one event per
/// time that has any, in time order.
fn by_time(changes: Vec<(Tick, Row, Diff)>, filter: &ViewFilter) -> Vec<Event> {
    let mut times: BTreeMap<Tick, BTreeMap<Row, Diff>> = BTreeMap::new();
    for (t, row, d) in changes {
        if filter.matches(&row) {
            *times.entry(t).or_default().entry(row).or_default() += d;
        }
    }
    times
        .into_iter()
        .filter_map(|(t, rows)| {
            let updates: Vec<(Row, Diff)> = rows.into_iter().filter(|(_, d)| *d != 0).collect();
            (!updates.is_empty()).then_some(Event::Changes { as_of: t, updates })
        })
        .collect()
}
