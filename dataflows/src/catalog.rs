//! The catalog: every installed job and the objects (tables, views) it
//! defines, with the dependency rules between jobs (DESIGN.md §3): which
//! dataflow a view lives in, which sources and imported views a new
//! dataflow needs, and which replace or drop would break another job's
//! reads. Pure: no I/O, no runtime; the engine keeps it durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;

use crate::plan::{JobPlan, TablePlan, ViewPlan};
use crate::sql::{plan_job, script_without, CatalogLookup, DropKind, DropPlan, ObjectInfo, PlanError};

/// Identifies one installed dataflow (one version of one job).
pub type DataflowId = u64;

/// Why a catalog change is refused, and whose fault that is: the user's
/// SQL (`Plan`), a name that is not there (`NotFound`), the state of other
/// jobs (`Conflict`), or the catalog itself (`Internal`).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Plan(PlanError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

#[derive(Clone)]
pub enum ObjectKind {
    Table(TablePlan),
    View(ViewPlan),
}

#[derive(Clone)]
pub struct Object {
    pub job: String,
    pub kind: ObjectKind,
    /// The dataflow a view lives in.
    pub df: DataflowId,
    /// Dataflows whose sources feed this object (its own and imported ones).
    pub closure: BTreeSet<DataflowId>,
}

pub struct Job {
    pub sql: String,
    pub plan: JobPlan,
    pub df: DataflowId,
    pub created_ms: u64,
    /// A replacement (or rebuild) being built.
    pub replacing: Option<Replacing>,
    /// Records appended before this are skipped (a rebuild `--from` a time,
    /// or `'auto.offset.reset' = 'latest'`); 0 reads all of history.
    pub skip_before: u64,
}

/// A new version of a job, built in the background while the old one serves.
pub struct Replacing {
    pub df: DataflowId,
    pub plan: JobPlan,
    pub started: Instant,
    /// The log topics its sources read, and the records before where they
    /// start reading: what the progress is measured against.
    pub topics: Vec<String>,
    pub skipped: u64,
}

/// What a new dataflow of a job reads.
pub struct DataflowInputs {
    /// The job's tables, and the tables of other jobs that its views read.
    pub sources: Vec<TablePlan>,
    /// Views of other jobs it reads, imported as arrangements: (view, its dataflow).
    pub imports: Vec<(String, DataflowId)>,
    /// The dataflows whose sources feed it, besides its own.
    pub closure: BTreeSet<DataflowId>,
}

/// One object a `DROP` removes.
#[derive(Clone, Debug, Serialize)]
pub struct Dropped {
    pub kind: String,
    pub name: String,
    pub job: String,
}

/// A checked `DROP` script: the objects it removes, and per owning job its
/// script without them (`None`: nothing is left, the job is dropped).
pub struct DropChange {
    pub dropped: Vec<Dropped>,
    pub names: BTreeSet<String>,
    pub jobs: Vec<(String, Option<String>)>,
}

#[derive(Default)]
pub struct Catalog {
    pub jobs: BTreeMap<String, Job>,
    pub objects: HashMap<String, Object>,
}

impl CatalogLookup for Catalog {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        let o = self
            .objects
            .get(&name.to_lowercase())
            .or_else(|| self.objects.get(name))?;
        Some(match &o.kind {
            ObjectKind::Table(t) => ObjectInfo {
                schema: t.schema.clone(),
                monotonic: t.primary_key.is_none(),
                key: t.primary_key.clone(),
                watermark: t.watermark,
            },
            ObjectKind::View(v) => ObjectInfo {
                schema: v.schema.clone(),
                monotonic: v.monotonic,
                key: v.key.clone(),
                watermark: v.watermark,
            },
        })
    }
}

/// The catalog without one job's objects: what a replacement plans against.
struct Without<'a> {
    catalog: &'a Catalog,
    job: &'a str,
}

impl CatalogLookup for Without<'_> {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        let o = self.catalog.objects.get(name)?;
        if o.job == self.job {
            return None;
        }
        self.catalog.lookup(name)
    }
}

/// Only views are visible to queries.
pub struct ViewsOnly<'a>(pub &'a Catalog);

impl CatalogLookup for ViewsOnly<'_> {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        match self.0.objects.get(name)?.kind {
            ObjectKind::View(_) => self.0.lookup(name),
            ObjectKind::Table(_) => None,
        }
    }
}

impl Catalog {
    /// Plans `sql` as job `name`: a new job (`replace` false: the name must
    /// be free) or a new version of an existing one, planned against the
    /// catalog without its old objects and refused when it would break
    /// another job's reads.
    pub fn plan_install(&self, name: &str, sql: &str, replace: bool) -> Result<JobPlan, CatalogError> {
        let exists = self.jobs.contains_key(name);
        if replace && !exists {
            return Err(CatalogError::NotFound(format!("no job named {name}")));
        }
        if !replace && exists {
            return Err(CatalogError::Conflict(format!(
                "a job named {name} exists: use PUT /v1/jobs/{name} to replace it"
            )));
        }
        if replace && self.jobs.get(name).is_some_and(|j| j.replacing.is_some()) {
            return Err(CatalogError::Conflict(format!("job {name} is already being replaced")));
        }
        let plan = if replace {
            plan_job(
                sql,
                &Without {
                    catalog: self,
                    job: name,
                },
            )
        } else {
            plan_job(sql, self)
        }
        .map_err(CatalogError::Plan)?;
        if replace {
            if let Some(why) = self.replace_conflict(name, &plan) {
                return Err(CatalogError::Conflict(format!("job {name} cannot be replaced: {why}")));
            }
        }
        Ok(plan)
    }

    /// The sources and imports of a dataflow for `plan`: the job's tables,
    /// and the tables of other jobs that its views read; views of other
    /// jobs are imported.
    pub fn inputs(&self, plan: &JobPlan) -> DataflowInputs {
        let own_tables: BTreeSet<&str> = plan.tables.iter().map(|t| t.name.as_str()).collect();
        let own_views: BTreeSet<&str> = plan.views.iter().map(|v| v.name.as_str()).collect();
        let mut sources: Vec<TablePlan> = plan.tables.clone();
        let mut imports: Vec<(String, DataflowId)> = Vec::new();
        let mut closure = BTreeSet::new();
        let reads = plan
            .views
            .iter()
            .map(|v| v.depends_on.as_slice())
            .chain(plan.sinks.iter().map(|s| std::slice::from_ref(&s.from)));
        for deps in reads {
            for dep in deps {
                if own_tables.contains(dep.as_str()) || own_views.contains(dep.as_str()) {
                    continue;
                }
                let Some(o) = self.objects.get(dep) else { continue };
                match &o.kind {
                    ObjectKind::Table(t) => {
                        if !sources.iter().any(|s| s.name == t.name) {
                            sources.push(t.clone());
                        }
                    }
                    ObjectKind::View(_) => {
                        if !imports.iter().any(|(n, _)| n == dep) {
                            imports.push((dep.clone(), o.df));
                            closure.extend(o.closure.iter().copied());
                        }
                    }
                }
            }
        }
        DataflowInputs {
            sources,
            imports,
            closure,
        }
    }

    /// Makes `plan`'s objects those of job `job`, living in dataflow `df`.
    pub fn register(&mut self, job: &str, plan: &JobPlan, df: DataflowId, closure: &BTreeSet<DataflowId>) {
        let object = |kind| Object {
            job: job.to_string(),
            kind,
            df,
            closure: closure.clone(),
        };
        for t in &plan.tables {
            self.objects
                .insert(t.name.clone(), object(ObjectKind::Table(t.clone())));
        }
        for v in &plan.views {
            self.objects.insert(v.name.clone(), object(ObjectKind::View(v.clone())));
        }
    }

    /// Swaps a job's finished replacement in for dataflow `df`: its objects
    /// now live there. The old dataflow and the new plan, or `None` when the
    /// job was dropped or replaced again meanwhile.
    pub fn swap_in(
        &mut self,
        name: &str,
        df: DataflowId,
        closure: &BTreeSet<DataflowId>,
    ) -> Option<(DataflowId, JobPlan)> {
        let job = self.jobs.get_mut(name)?;
        if job.replacing.as_ref().map(|r| r.df) != Some(df) {
            return None;
        }
        let Replacing { df: new_df, plan, .. } = job.replacing.take()?;
        let old_df = job.df;
        job.df = new_df;
        job.plan = plan.clone();
        self.objects.retain(|_, o| o.job != name);
        self.register(name, &plan, new_df, closure);
        Some((old_df, plan))
    }

    /// The view named, or why it cannot be read.
    pub fn view(&self, view: &str) -> Result<(&Object, &ViewPlan), CatalogError> {
        match self.objects.get(view) {
            Some(
                o @ Object {
                    kind: ObjectKind::View(v),
                    ..
                },
            ) => Ok((o, v)),
            Some(_) => Err(CatalogError::NotFound(format!(
                "{view} is a table, not a view: tables are read through views"
            ))),
            None => Err(CatalogError::NotFound(format!("no view named {view}"))),
        }
    }

    /// Why replacing `job` by `plan` would break another job's reads, if it
    /// would. Another job's dataflow holds this job's views (imported
    /// arrangements), which a replacement rebuilds in a new dataflow; a
    /// table is read by each job through its own source, so it only matters
    /// when the new version drops or changes it.
    pub fn replace_conflict(&self, job: &str, plan: &JobPlan) -> Option<String> {
        self.first_blocking_read(|reader, o, read, dep| {
            if o.job == job || dep.job != job {
                return None;
            }
            match &dep.kind {
                ObjectKind::View(_) => Some(format!("view {reader} (job {}) reads its view {read}", o.job)),
                ObjectKind::Table(t) if !plan.tables.contains(t) => Some(format!(
                    "view {reader} (job {}) reads its table {read}, which the new version drops or changes",
                    o.job
                )),
                ObjectKind::Table(_) => None,
            }
        })
    }

    /// A view of another job that reads an object of `job`.
    pub fn dependant(&self, job: &str) -> Option<String> {
        self.first_blocking_read(|reader, o, _, dep| (o.job != job && dep.job == job).then(|| format!("view {reader}")))
    }

    /// Scans the views' reads: `blocks(reader, its object, read, the read
    /// object)` says why a read stands in the way, if it does. Returns the
    /// first reason in name order (one per reader), so messages are stable.
    fn first_blocking_read(&self, blocks: impl Fn(&str, &Object, &str, &Object) -> Option<String>) -> Option<String> {
        let mut found: Vec<String> = self
            .objects
            .iter()
            .filter_map(|(reader, o)| {
                let ObjectKind::View(v) = &o.kind else { return None };
                v.depends_on
                    .iter()
                    .find_map(|read| blocks(reader, o, read, self.objects.get(read)?))
            })
            .collect();
        found.sort();
        found.into_iter().next()
    }

    /// Checks `DROP TABLE` / `DROP VIEW` statements as one change: every
    /// name exists (or `IF EXISTS`), is of the kind named, and nothing
    /// outside the statements depends on it; every owning job plans
    /// without the dropped objects and breaks no other job's reads.
    pub fn plan_drops(&self, drops: &[DropPlan]) -> Result<DropChange, CatalogError> {
        let mut by_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut dropped = Vec::new();
        for d in drops {
            let Some(o) = self.objects.get(&d.name) else {
                if d.if_exists {
                    continue;
                }
                let code = match d.kind {
                    DropKind::Table => "unknown_table",
                    DropKind::View => "unknown_view",
                };
                return Err(CatalogError::Plan(
                    d.error(code, format!("unknown {} \"{}\"", d.kind, d.name)),
                ));
            };
            let actual = match o.kind {
                ObjectKind::Table(_) => DropKind::Table,
                ObjectKind::View(_) => DropKind::View,
            };
            if actual != d.kind {
                return Err(CatalogError::Plan(d.error(
                    "wrong_object_type",
                    format!(
                        "\"{}\" is a {actual}, not a {}: use DROP {}",
                        d.name,
                        d.kind,
                        actual.to_string().to_uppercase()
                    ),
                )));
            }
            if by_job.entry(o.job.clone()).or_default().insert(d.name.clone()) {
                dropped.push(Dropped {
                    kind: actual.to_string(),
                    name: d.name.clone(),
                    job: o.job.clone(),
                });
            }
        }
        let names: BTreeSet<String> = by_job.values().flatten().cloned().collect();
        let blocked = self.first_blocking_read(|reader, o, read, _| {
            (!names.contains(reader) && names.contains(read))
                .then(|| format!("cannot drop {read}: view {reader} (job {}) depends on it", o.job))
        });
        if let Some(why) = blocked {
            return Err(CatalogError::Conflict(why));
        }
        // Every rebuilt job must plan and must not break another job's
        // reads; checked for all before anything changes.
        let mut jobs = Vec::new();
        for (job, names) in &by_job {
            let Some(j) = self.jobs.get(job) else { continue };
            if j.replacing.is_some() {
                return Err(CatalogError::Conflict(format!(
                    "job {job} is being replaced: drop its objects once the replacement has caught up"
                )));
            }
            let rest = script_without(&j.sql, names).map_err(CatalogError::Plan)?;
            if let Some(sql) = &rest {
                let plan = plan_job(sql, &Without { catalog: self, job }).map_err(|e| {
                    CatalogError::Internal(format!("job {job} does not plan without the dropped objects: {e}"))
                })?;
                if let Some(why) = self.replace_conflict(job, &plan) {
                    return Err(CatalogError::Conflict(format!(
                        "job {job} would be rebuilt without the dropped objects, but {why}"
                    )));
                }
            }
            jobs.push((job.clone(), rest));
        }
        Ok(DropChange { dropped, names, jobs })
    }
}
