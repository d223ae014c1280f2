//! The engine's side of the read path: what [`weir_queries::reader`]
//! needs to know (the catalog's view versions, where a token's write is,
//! how each dataflow times records) and how a peek reaches the workers.

use std::sync::Arc;

use weir_connectors::source::written_at;
use weir_dataflows::catalog::{DataflowId, ObjectKind, ViewsOnly};
use weir_dataflows::sql::{plan_peek, PeekPlan};
use weir_operators::repr::{Schema, Tick};
use weir_queries::reader::{self, ReadContext, ReadOptions, ReadPath, ViewAnswer, ViewVersion};
use weir_queries::subscribe::Subscription;
use weir_queries::{CopyHandle, Frontiers, PeekCommand, PendingPeeks, ReadError, Token};

use super::{Engine, EngineError};
use crate::shared::lock;
use crate::worker::Command;

impl ReadContext for Engine {
    fn view(&self, name: &str) -> Result<ViewVersion, ReadError> {
        let cat = lock(&self.catalog);
        let (o, v) = cat.view(name).map_err(|e| ReadError::NotFound(e.to_string()))?;
        // A version (a view in one dataflow) never changes its columns or
        // closure: they are shared from the first look, not copied per read.
        let mut shared = lock(&self.view_versions);
        let (schema, closure) = match shared.get(name).filter(|(df, ..)| *df == o.df) {
            Some((_, schema, closure)) => (Arc::clone(schema), Arc::clone(closure)),
            None => {
                let schema = Arc::new(v.schema.clone());
                let closure = Arc::new(o.closure.clone());
                shared.insert(name.to_string(), (o.df, Arc::clone(&schema), Arc::clone(&closure)));
                (schema, closure)
            }
        };
        Ok(ViewVersion {
            df: o.df,
            schema,
            key: v.key.clone(),
            closure,
        })
    }

    fn plan_query(&self, sql: &str) -> Result<(PeekPlan, DataflowId), ReadError> {
        let cat = lock(&self.catalog);
        let plan = plan_peek(sql, &ViewsOnly(&cat)).map_err(ReadError::Plan)?;
        let df = cat
            .objects
            .get(&plan.view)
            .map(|o| o.df)
            .ok_or_else(|| ReadError::NotFound(format!("no view named {}", plan.view)))?;
        Ok((plan, df))
    }

    fn written_at(&self, t: &Token) -> Option<Tick> {
        let mirrors = self.shared.connectors.mirrors_of(&t.topic);
        written_at(&self.shared.log, &mirrors, &t.topic, t.partition, t.offset)
    }

    fn fed_in(&self, df: DataflowId, tick: Tick) -> Tick {
        self.shared.sources.fed_in(df, tick)
    }

    fn send_peek(&self, peek: PeekCommand) -> Result<(), ReadError> {
        self.send(Command::Peek(peek))
            .map_err(|e| ReadError::Internal(e.to_string()))
    }

    fn frontiers(&self) -> &Arc<Frontiers> {
        &self.shared.frontiers
    }

    fn pending(&self) -> &PendingPeeks {
        &self.shared.peeks
    }

    fn workers(&self) -> usize {
        self.shared.workers
    }

    fn read_copy(&self, df: DataflowId, view: &str) -> Option<CopyHandle> {
        self.shared.copies.get(df, view)
    }

    fn observe_peek(&self, view: &str, how: ReadPath, outcome: &str, seconds: Option<f64>) {
        let m = &self.shared.metrics;
        m.peeks.with_label_values(&[view, how.path, how.via, outcome]).inc();
        if let Some(s) = seconds {
            m.peek_seconds.with_label_values(&[view, how.path, how.via]).observe(s);
        }
    }
}

/// A view as a front end that derives its types from the catalog (GraphQL)
/// sees it: its name, columns, key, and whether it has a read copy (which
/// subscriptions need).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewShape {
    pub name: String,
    pub job: String,
    /// The dataflow this version lives in: a view's shape changes only with
    /// it.
    pub df: DataflowId,
    pub schema: Schema,
    pub key: Option<Vec<usize>>,
    pub read_copy: bool,
}

impl Engine {
    /// Every view's shape, sorted by name.
    pub fn view_shapes(&self) -> Vec<ViewShape> {
        let cat = lock(&self.catalog);
        let mut shapes: Vec<ViewShape> = cat
            .objects
            .iter()
            .filter_map(|(name, o)| match &o.kind {
                ObjectKind::View(v) => Some(ViewShape {
                    name: name.clone(),
                    job: o.job.clone(),
                    df: o.df,
                    schema: v.schema.clone(),
                    key: v.key.clone(),
                    read_copy: v.read_copy,
                }),
                ObjectKind::Table(_) => None,
            })
            .collect();
        shapes.sort_by(|a, b| a.name.cmp(&b.name));
        shapes
    }

    /// Every view's name and dataflow, sorted by name: what tells whether
    /// [`Engine::view_shapes`] changed, without copying them.
    pub fn view_dataflows(&self) -> Vec<(String, DataflowId)> {
        let cat = lock(&self.catalog);
        let mut out: Vec<(String, DataflowId)> = cat
            .objects
            .iter()
            .filter(|(_, o)| matches!(o.kind, ObjectKind::View(_)))
            .map(|(name, o)| (name.clone(), o.df))
            .collect();
        out.sort();
        out
    }

    /// The dataflow the view lives in now.
    pub fn view_dataflow(&self, view: &str) -> Option<DataflowId> {
        lock(&self.catalog).view(view).ok().map(|(o, _)| o.df)
    }

    /// Reads a view: rows whose columns equal `filters`, at most `limit`,
    /// reflecting every write in `opts.after`.
    pub async fn read_view(
        &self,
        view: &str,
        filters: &[(String, String)],
        limit: Option<usize>,
        opts: &ReadOptions,
    ) -> Result<ViewAnswer, EngineError> {
        match reader::read_view(self, view, filters, limit, opts).await {
            // Older than the history the live view keeps: computed beside it.
            Err(ReadError::BadRequest {
                code: "as_of_too_old", ..
            }) if opts.after.is_empty() => {
                let as_of = opts.as_of.unwrap_or(0);
                self.read_past(view, filters, limit, as_of, opts.timeout).await
            }
            other => Ok(other?),
        }
    }

    /// `POST /v1/query`: one SELECT over one view.
    /// Subscribes to a view's changes (see [`Subscription::open`]).
    pub fn subscribe(
        &self,
        view: &str,
        filters: &[(String, String)],
        from: Option<Tick>,
    ) -> Result<Subscription, EngineError> {
        Ok(Subscription::open(self, view, filters, from)?)
    }

    pub async fn query(&self, sql: &str, opts: &ReadOptions) -> Result<ViewAnswer, EngineError> {
        Ok(reader::query(self, sql, opts).await?)
    }
}
