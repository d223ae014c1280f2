//! Point-in-time reads: a view as of a time older than the history its
//! live dataflow keeps. The engine builds the job's dataflow once more,
//! beside the live one: restored from its newest snapshot at or before that
//! time (else from the start of what it reads), fed the log up to that time
//! and no further, read at it, then dropped. The live dataflows are not
//! touched.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir_connectors::source::Feeding;
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::sql::PeekPlan;
use weir_operators::repr::{Schema, Tick};
use weir_queries::reader::{self, ReadContext, ReadOptions, ReadPath, ViewAnswer, ViewVersion};
use weir_queries::{Frontiers, PeekCommand, PendingPeeks, ReadError, Token};

use super::{Engine, EngineError};
use crate::shared::lock;
use crate::worker::{Command, Install};

/// A point-in-time read waits at least this long: it may replay history.
const MIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The read path, pointed at the dataflow built for one past time.
struct AtDataflow<'a> {
    engine: &'a Engine,
    view: &'a str,
    df: DataflowId,
    schema: Schema,
    key: Option<Vec<usize>>,
}

impl ReadContext for AtDataflow<'_> {
    fn view(&self, name: &str) -> Result<ViewVersion, ReadError> {
        if name != self.view {
            return Err(ReadError::NotFound(format!("no view named {name}")));
        }
        Ok(ViewVersion {
            df: self.df,
            schema: Arc::new(self.schema.clone()),
            key: self.key.clone(),
            closure: Arc::new(BTreeSet::from([self.df])),
        })
    }
    fn plan_query(&self, _sql: &str) -> Result<(PeekPlan, DataflowId), ReadError> {
        Err(ReadError::BadRequest {
            code: "as_of_too_old",
            message: "a point-in-time read takes a view, not a query".into(),
        })
    }
    fn written_at(&self, t: &Token) -> Option<Tick> {
        self.engine.written_at(t)
    }
    fn fed_in(&self, df: DataflowId, tick: Tick) -> Tick {
        self.engine.fed_in(df, tick)
    }
    fn send_peek(&self, peek: PeekCommand) -> Result<(), ReadError> {
        self.engine.send_peek(peek)
    }
    fn frontiers(&self) -> &Arc<Frontiers> {
        self.engine.frontiers()
    }
    fn pending(&self) -> &PendingPeeks {
        self.engine.pending()
    }
    fn workers(&self) -> usize {
        self.engine.workers()
    }
    fn observe_peek(&self, view: &str, how: ReadPath, outcome: &str, seconds: Option<f64>) {
        self.engine.observe_peek(view, how, outcome, seconds);
    }
}

fn refused(code: &'static str, message: String) -> EngineError {
    EngineError::Read(ReadError::BadRequest { code, message })
}

impl Engine {
    /// The view as of `as_of`, computed beside the live dataflows (see the
    /// module doc).
    pub(super) async fn read_past(
        &self,
        view: &str,
        filters: &[(String, String)],
        limit: Option<usize>,
        as_of: Tick,
        timeout: Duration,
    ) -> Result<ViewAnswer, EngineError> {
        let (job, live_df, plan, inputs, skip_before, schema, key) = {
            let cat = lock(&self.catalog);
            let (o, v) = cat
                .view(view)
                .map_err(|e| EngineError::Read(ReadError::NotFound(e.to_string())))?;
            let job = o.job.clone();
            let (schema, key) = (v.schema.clone(), v.key.clone());
            let j = cat.jobs.get(&job).ok_or_else(|| EngineError::no_job(&job))?;
            (
                job,
                o.df,
                j.plan.clone(),
                cat.inputs(&j.plan),
                j.skip_before,
                schema,
                key,
            )
        };
        if !inputs.imports.is_empty() {
            return Err(refused(
                "as_of_too_old",
                format!("view {view} reads views of other jobs; a point-in-time read of it would need them as of {as_of} too, which is not supported"),
            ));
        }
        // The live version's plan: its snapshots fit this dataflow.
        let restore = match lock(&self.fingerprints).get(&live_df).copied() {
            Some(fp) => self.fitting_snapshot(&job, fp, as_of, false)?.map(|(point, _)| point),
            None => None,
        };
        let skip = restore.as_ref().map_or(skip_before, |r| skip_before.max(r.at + 1));
        for t in &inputs.sources {
            let held = self.shared.log.held(t.topic());
            if held.trimmed_through > 0 && held.trimmed_through >= skip {
                return Err(refused(
                    "history_trimmed",
                    format!(
                        "view {view} as of {as_of} needs records of topic {} that retention removed (it holds them after {}), and job {job} has no snapshot at or before {as_of}",
                        t.topic(),
                        held.trimmed_through
                    ),
                ));
            }
            if held.compacted_through > 0 && held.compacted_through >= skip {
                return Err(refused(
                    "history_compacted",
                    format!(
                        "view {view} as of {as_of} needs the history of topic {} up to {as_of}, but key compaction kept only the latest record per key through {}, and job {job} has no snapshot at or after it and at or before {as_of}",
                        t.topic(),
                        held.compacted_through
                    ),
                ));
            }
        }
        let df = self.next_df.fetch_add(1, Ordering::SeqCst);
        // Everything up to `as_of` is history, fed no later than it.
        let feeding = Feeding {
            since: as_of,
            pins: restore.iter().map(|r| r.at).collect(),
        };
        self.shared.sources.set_feeding(df, feeding.clone());
        self.send(Command::Install(Install {
            df,
            job: format!("{job}@{as_of}"),
            sources: inputs.sources,
            views: plan.views,
            imports: Vec::new(),
            feeding,
            sinks: Vec::new(),
            skip_before: skip,
            restore,
            until: Some(as_of),
        }))?;
        let ctx = AtDataflow {
            engine: self,
            view,
            df,
            schema,
            key,
        };
        let opts = ReadOptions {
            after: Vec::new(),
            as_of: Some(as_of),
            timeout: timeout.max(MIN_TIMEOUT),
        };
        let answer = reader::read_view(&ctx, view, filters, limit, &opts).await;
        let dropped = self.send(Command::Drop { df });
        let answer = answer?;
        dropped?;
        Ok(answer)
    }
}
