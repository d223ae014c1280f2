//! Jobs: submit, install, replace (swapped in once caught up), rebuild,
//! drop, and `DROP TABLE`/`DROP VIEW` as a change of the owning jobs. The
//! catalog decides what is allowed; this module applies it to the durable
//! job store and the workers.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_connectors::log::DEFAULT_PARTITIONS;
use weir_connectors::sink::SinkMsg;
use weir_connectors::source::Feeding;
use weir_dataflows::catalog::{Catalog, CatalogError, DataflowId, Dropped, Job, Replacing};
use weir_dataflows::plan::StartFrom;
use weir_dataflows::sql::plan_drops;
use weir_operators::repr::Tick;

use super::snapshots::fingerprint;
use super::{Engine, EngineError, JobStatus};
use crate::shared::{lock, now_ms, sink_key};
use crate::worker::{Command, Install};

/// What the job store keeps durably per job.
#[derive(Serialize, Deserialize)]
struct StoredJob {
    sql: String,
    created_ms: u64,
    /// Set by a rebuild: where its sources start (see `Job::skip_before`),
    /// kept so that a restart rebuilds the same views.
    #[serde(default)]
    from_ms: Option<u64>,
}

/// What a `DROP` script did.
#[derive(Serialize)]
pub struct DropOutcome {
    pub dropped: Vec<Dropped>,
    pub jobs_rebuilt: Vec<String>,
    pub jobs_dropped: Vec<String>,
}

impl Engine {
    /// Re-installs the jobs of the durable job store, in creation order.
    pub fn restore(self: &Arc<Self>) -> Result<usize, EngineError> {
        let jobs = self.shared.store.jobs().jobs();
        let n = jobs.len();
        for (name, bytes) in jobs {
            let stored: StoredJob = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Internal(format!("catalog entry for job {name} is unreadable: {e}")))?;
            let mut cat = lock(&self.catalog);
            self.install_in(
                &mut cat,
                &name,
                &stored.sql,
                false,
                Some(stored.created_ms),
                stored.from_ms,
            )?;
        }
        Ok(n)
    }

    /// Plans and installs a job (`replace`: swaps an existing one once the
    /// new version has caught up; readers see the old views until then).
    pub fn submit(self: &Arc<Self>, name: &str, sql: &str, replace: bool) -> Result<JobStatus, EngineError> {
        if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(EngineError::BadRequest {
                code: "invalid_name",
                message: format!("\"{name}\" is not a valid job name: 1-200 of letters, digits, _ - ."),
            });
        }
        self.install_in(&mut lock(&self.catalog), name, sql, replace, None, None)?;
        self.job(name)
    }

    /// Rebuilds a job's views from its sources' history, from `from` (0:
    /// all of it), into a new version while the old one serves; they swap
    /// once the new one has caught up (`GET /v1/jobs/{name}` shows how far).
    pub fn rebuild(self: &Arc<Self>, name: &str, from: Tick) -> Result<JobStatus, EngineError> {
        {
            let mut cat = lock(&self.catalog);
            let job = cat.jobs.get(name).ok_or_else(|| EngineError::no_job(name))?;
            let sql = job.sql.clone();
            let topics: Vec<String> = cat
                .inputs(&job.plan)
                .sources
                .iter()
                .map(|t| t.topic().to_string())
                .collect();
            self.check_history_held(&topics, from)?;
            self.install_in(&mut cat, name, &sql, true, None, Some(from))?;
        }
        self.job(name)
    }

    /// Plans and installs a job under the caller's hold of the catalog, so
    /// that several changes can be checked and applied as one. `created`:
    /// restored from the job store (not stored again); `from`: a rebuild's
    /// start.
    fn install_in(
        self: &Arc<Self>,
        cat: &mut Catalog,
        name: &str,
        sql: &str,
        replace: bool,
        created: Option<u64>,
        from: Option<Tick>,
    ) -> Result<(), EngineError> {
        let plan = cat.plan_install(name, sql, replace)?;
        let inputs = cat.inputs(&plan);
        let (sources, imports, mut closure) = (inputs.sources, inputs.imports, inputs.closure);
        for t in &sources {
            if let Some(s) = t.schedule() {
                // One partition: the ticks in order.
                self.shared.log.create_topic(&s.topic, 1).map_err(|e| {
                    EngineError::Internal(format!("cannot create the schedule's topic {}: {e}", s.topic))
                })?;
                self.ensure_schedule(t)?;
                continue;
            }
            if t.kafka().is_some() {
                // Its copy is created by the ingest, with the topic's partitions.
                self.ensure_ingest(t)?;
                continue;
            }
            self.shared
                .log
                .create_topic(t.topic(), DEFAULT_PARTITIONS)
                .map_err(|e| EngineError::BadRequest {
                    code: "invalid_topic",
                    message: format!("table {}: {e}", t.name),
                })?;
        }
        self.apply_table_retention(&plan.tables)?;
        let df = self.next_df.fetch_add(1, Ordering::SeqCst);
        closure.insert(df);
        let created_ms = created.unwrap_or_else(now_ms);
        let stored = serde_json::to_vec(&StoredJob {
            sql: sql.to_string(),
            created_ms,
            from_ms: from,
        })
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if created.is_none() {
            self.shared
                .store
                .jobs()
                .put_job(name, &stored)
                .map_err(|e| EngineError::Internal(format!("cannot store the job: {e}")))?;
        }
        // Records appended from now on are fed at their own tick; earlier
        // ones are history, replayed at coarser times up to now.
        let since = self.shared.log.now();
        // Sinks first: a restarted sink resumes after the time it recorded,
        // which the replay must then feed exactly.
        let mut pins = Vec::new();
        for s in &plan.sinks {
            pins.extend(self.ensure_sink(s, df)?);
        }
        let skip_before = from.unwrap_or(match plan.start {
            StartFrom::Earliest => 0,
            StartFrom::Latest => created_ms,
        });
        let fingerprint = fingerprint(&sources, &plan.views, &imports, &plan.sinks, skip_before)?;
        lock(&self.fingerprints).insert(df, fingerprint);
        // A job restored from the job store at start resumes from its
        // latest fitting snapshot: its state at `at`, and its sources after
        // it. History is never fed across `at`, so `at` stays a time of
        // the restored views.
        let restore = if created.is_some() && from.is_none() && !replace {
            self.choose_restore(name, fingerprint)
        } else {
            None
        };
        if let Some(r) = &restore {
            pins.push(r.at);
            // The sinks wrote every change through the snapshot's time
            // before it was committed: what the restore brings at that
            // time is state, not news.
            let writers = self.shared.connectors.sinks();
            for s in &plan.sinks {
                if let Some(w) = writers.get(&sink_key(s)) {
                    let _ = w.sender().send(SinkMsg::ResumeAfter { version: df, at: r.at });
                }
            }
        }
        pins.sort_unstable();
        pins.dedup();
        let feeding = Feeding { since, pins };
        self.shared.sources.set_feeding(df, feeding.clone());
        // The log topics a replacement's progress is measured on.
        let topics: Vec<String> = if replace {
            sources.iter().map(|t| t.topic().to_string()).collect()
        } else {
            Vec::new()
        };
        self.send(Command::Install(Install {
            df,
            job: name.to_string(),
            sources,
            views: plan.views.clone(),
            imports,
            feeding,
            sinks: plan.sinks.clone(),
            skip_before: restore.as_ref().map_or(skip_before, |r| skip_before.max(r.at + 1)),
            restore,
            until: None,
        }))?;
        if replace {
            // What the progress of the replacement is measured against
            // (a binary search per partition: replacements only).
            let log = &self.shared.log;
            let skipped = topics
                .iter()
                .flat_map(|t| (0..log.partitions(t)).map(move |p| (t, p)))
                .map(|(t, p)| log.first_offset_from(t, p, skip_before))
                .sum();
            if let Some(j) = cat.jobs.get_mut(name) {
                j.replacing = Some(Replacing {
                    df,
                    plan,
                    started: Instant::now(),
                    topics,
                    skipped,
                });
                j.sql = sql.to_string();
                j.skip_before = skip_before;
            }
            let engine = Arc::clone(self);
            let name = name.to_string();
            let install_tick = now_ms();
            tokio::spawn(async move { engine.finish_replace(name, df, closure, install_tick).await });
        } else {
            cat.register(name, &plan, df, &closure);
            cat.jobs.insert(
                name.to_string(),
                Job {
                    sql: sql.to_string(),
                    plan,
                    df,
                    created_ms,
                    replacing: None,
                    skip_before,
                },
            );
        }
        Ok(())
    }

    /// Waits until the replacement dataflow has read the log and its views
    /// are complete past the time it was installed, then swaps atomically.
    async fn finish_replace(
        self: Arc<Self>,
        name: String,
        df: DataflowId,
        closure: BTreeSet<DataflowId>,
        install_tick: Tick,
    ) {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // Stop when the job was dropped, or replaced again meanwhile.
            let still_replacing = lock(&self.catalog)
                .jobs
                .get(&name)
                .and_then(|j| j.replacing.as_ref())
                .is_some_and(|r| r.df == df);
            if !still_replacing {
                return;
            }
            if !self.shared.caught_up(df, install_tick) {
                continue;
            }
            let old = {
                let mut cat = lock(&self.catalog);
                let Some((old_df, plan)) = cat.swap_in(&name, df, &closure) else {
                    return;
                };
                self.prune_ingests(&cat);
                // The new version's sinks take over where the old ones end.
                let writers = self.shared.connectors.sinks();
                for s in &plan.sinks {
                    if let Some(w) = writers.get(&sink_key(s)) {
                        let _ = w.sender().send(SinkMsg::Activate { version: df });
                    }
                }
                drop(writers);
                self.prune_sinks(&cat);
                // The old version's snapshots are of another plan.
                self.forget_snapshots(&name);
                old_df
            };
            lock(&self.fingerprints).remove(&old);
            let _ = self.send(Command::Drop { df: old });
            return;
        }
    }

    /// Ends the streams of a job's sources (see [`Command::EndSources`]).
    pub fn end_sources(&self, name: &str) -> Result<(), EngineError> {
        let df = lock(&self.catalog)
            .jobs
            .get(name)
            .map(|j| j.df)
            .ok_or_else(|| EngineError::no_job(name))?;
        self.send(Command::EndSources { df })
    }

    /// The dataflow of a job's current version.
    pub fn job_dataflow(&self, name: &str) -> Option<DataflowId> {
        lock(&self.catalog).jobs.get(name).map(|j| j.df)
    }

    pub fn drop_job(&self, name: &str) -> Result<(), EngineError> {
        let mut cat = lock(&self.catalog);
        self.drop_job_in(&mut cat, name)
    }

    fn drop_job_in(&self, cat: &mut Catalog, name: &str) -> Result<(), EngineError> {
        let Some(job) = cat.jobs.get(name) else {
            return Err(EngineError::no_job(name));
        };
        if let Some(dep) = cat.dependant(name) {
            return Err(EngineError::Catalog(CatalogError::Conflict(format!(
                "job {name} cannot be dropped: {dep} (of another job) reads its objects"
            ))));
        }
        let mut dfs = vec![job.df];
        if let Some(Replacing { df: d, .. }) = &job.replacing {
            dfs.push(*d);
        }
        self.shared
            .store
            .jobs()
            .delete_job(name)
            .map_err(|e| EngineError::Internal(format!("cannot update the catalog: {e}")))?;
        cat.jobs.remove(name);
        cat.objects.retain(|_, o| o.job != name);
        self.prune_ingests(cat);
        self.prune_sinks(cat);
        self.forget_snapshots(name);
        for df in dfs {
            lock(&self.fingerprints).remove(&df);
            self.send(Command::Drop { df })?;
        }
        Ok(())
    }

    /// Removes a job's snapshots (dropped, or replaced by another plan).
    fn forget_snapshots(&self, name: &str) {
        self.shared.snapshots.forget_job(name);
        if let Err(e) = self.shared.snapshots.store.forget_job(name) {
            eprintln!("weir: cannot remove the snapshots of job {name}: {e}");
        }
    }

    /// Runs `DROP TABLE` / `DROP VIEW` statements as one change (checked
    /// whole by [`Catalog::plan_drops`]). Then each owning job is rebuilt
    /// from its script without those objects, like a replace (a job left
    /// with nothing is dropped). The objects disappear from reads at once;
    /// the rest of a rebuilt job is served by its old dataflow until the
    /// new one has caught up. The stored script loses the statements, so a
    /// restart does not bring them back.
    pub fn drop_objects(self: &Arc<Self>, sql: &str) -> Result<DropOutcome, EngineError> {
        let drops = plan_drops(sql).map_err(CatalogError::Plan)?;
        let mut cat = lock(&self.catalog);
        let change = cat.plan_drops(&drops)?;
        cat.objects.retain(|n, _| !change.names.contains(n));
        let mut jobs_rebuilt = Vec::new();
        let mut jobs_dropped = Vec::new();
        for (job, rest) in change.jobs {
            match rest {
                Some(sql) => {
                    let from = cat.jobs.get(&job).map(|j| j.skip_before);
                    self.install_in(&mut cat, &job, &sql, true, None, from)?;
                    jobs_rebuilt.push(job);
                }
                None => {
                    self.drop_job_in(&mut cat, &job)?;
                    jobs_dropped.push(job);
                }
            }
        }
        Ok(DropOutcome {
            dropped: change.dropped,
            jobs_rebuilt,
            jobs_dropped,
        })
    }
}
