//! SQL → [`JobPlan`]: parsing with `sqlparser`, name resolution against the
//! catalog, type checking, and planning into [`RelPlan`](crate::plan::RelPlan)s.
//!
//! Planning is pure (Materialize's rule): every fact it needs about existing
//! objects comes through [`CatalogLookup`], and nothing is installed here.
//! A job either plans completely or fails with one [`PlanError`] that names
//! the line and column of the offending construct.
//!
//! # Layout
//!
//! One concern per file, split the way Materialize splits its planner:
//!
//! - `error`: [`PlanError`], positions in the text (`Loc`), shared error constructors.
//! - `lookup`: [`CatalogLookup`] and [`ObjectInfo`], all that planning knows of the catalog.
//! - `text`: line/column ↔ byte offsets in SQL text; blanking a cut-out clause.
//! - `extensions`: weir's `WITHIN … [EMIT TIMEOUTS]`, cut out of the text before parsing.
//! - `watermark`: the `watermark.*` table options and the watermark a plan inherits.
//! - `kafka`: Kafka table options, and `CREATE SINK` (cut out of the text, then planned).
//! - `parse`: [`parse()`]: the cuts above, then `sqlparser`, with located errors.
//! - `typeconv`: SQL type names, common types, coercions and type checks.
//! - `scope`: the objects visible to a statement, the columns visible to an expression.
//! - `aggregate`: the aggregate functions: names, functions, result types.
//! - `bind`: scalar expressions bound to typed expressions, aggregates in a grouped query.
//! - `optimize`: [`optimize()`], the rewrites that bound a plan's state.
//! - `prune`: [`prune_columns`], each read narrowed to the columns a plan uses.
//! - `query`: `QueryPlanner`: set operations, `ORDER BY … LIMIT`, `FROM` and joins.
//! - `select`: one `SELECT` block: `WHERE`, `GROUP BY`/`HAVING`, `ROW_NUMBER`, `DISTINCT`.
//! - `pattern`: `MATCH_RECOGNIZE`: the pattern, `DEFINE`, `MEASURES`.
//! - `ddl`: the statements of a job: `CREATE TABLE`, `CREATE VIEW`, `SET`.
//! - `drop`: [`plan_drops`] and [`script_without`].
//! - `peek`: [`plan_peek`], a read of one view.
//! - `mod.rs` (this file): [`plan_job`], and the public paths (re-exports).
//!
//! Imports go one way, down this order (a file uses only files before it):
//!
//! error → lookup → text → extensions → watermark → kafka → parse →
//! typeconv → scope → aggregate → bind → optimize → prune → query → select →
//! pattern → ddl → drop → peek → mod.
//!
//! The one edge against it is a method call, not an import: `QueryPlanner`'s
//! methods live in `query`, `select` and `pattern`, and `query` calls
//! `plan_select` and `plan_match_recognize` (a `FROM` item may be a
//! `MATCH_RECOGNIZE`, whose input is again a `FROM` item).

mod aggregate;
mod bind;
mod ddl;
mod drop;
mod error;
mod extensions;
mod http_sink;
mod kafka;
mod lookup;
mod optimize;
mod parse;
mod pattern;
mod peek;
mod prune;
mod query;
mod schedule;
mod scope;
mod select;
mod sink;
mod text;
mod typeconv;
mod watermark;

use sqlparser::ast::{self, Statement};

pub use drop::{plan_drops, script_without, DropKind, DropPlan};
pub use error::PlanError;
pub use extensions::{parse_bytes, parse_duration_ms};
pub use lookup::{CatalogLookup, ObjectInfo};
pub use optimize::optimize;
pub use parse::parse;
pub use peek::{plan_peek, PeekPlan};
pub use prune::prune_columns;

use crate::plan::JobPlan;
use ddl::{plan_start, plan_table, plan_view};
use error::{loc_of, loc_of_statement, Loc, Result};
use parse::parse_with_sinks;
use scope::JobScope;

/// Plans a job: a script of `CREATE TABLE` and `CREATE [MATERIALIZED] VIEW`
/// statements. Later statements may use objects of earlier ones.
pub fn plan_job(sql: &str, catalog: &dyn CatalogLookup) -> Result<JobPlan> {
    let (statements, ext, sinks) = parse_with_sinks(sql)?;
    if statements.is_empty() && sinks.is_empty() {
        return Err(PlanError::new("empty_job", "the job contains no statements", Loc(1, 1)));
    }
    let mut job = JobPlan::default();
    for stmt in &statements {
        let scope = JobScope { catalog, job: &job };
        match stmt {
            Statement::CreateTable(ct) => {
                let table = plan_table(ct, &scope)?;
                job.tables.push(table);
            }
            Statement::CreateView(cv) => {
                let view = plan_view(cv, &scope, &ext)?;
                job.views.push(view);
            }
            Statement::Set(ast::Set::SingleAssignment { variable, values, .. }) => {
                job.start = plan_start(variable, values)?;
            }
            Statement::Drop { .. } => {
                return Err(PlanError::new(
                    "unsupported",
                    "DROP is not part of a job: run it on its own (POST /v1/sql, or `weir sql`)",
                    loc_of_statement(stmt),
                ));
            }
            other => {
                let kind = other.to_string();
                let kind: String = kind.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                return Err(PlanError::new(
                    "unsupported",
                    format!("{kind} is not supported in a job: a job holds CREATE TABLE, CREATE VIEW and CREATE SINK statements"),
                    loc_of(other),
                ));
            }
        }
    }
    for st in &sinks {
        let sink = sink::plan_sink(st, &job, catalog)?;
        job.sinks.push(sink);
    }
    Ok(job)
}
