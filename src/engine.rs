//! The control plane: the catalog of jobs, planning and installing them,
//! replacing them without disturbing readers, and reads of views at a
//! consistent time with read-your-writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weir_connectors::decode::encode_json;
use weir_connectors::kafka::{start_ingest, Ingest, SourceConfig, Startup};
use weir_connectors::log::DEFAULT_PARTITIONS;
use weir_connectors::sink::{start_sink, Sink, SinkConfig, SinkEnvelope, SinkMsg, SinkProgress};
use weir_dataflows::expr::{cast, sql_cmp};
use weir_dataflows::plan::{Envelope, JobPlan, KafkaStartup, SinkPlan, StartFrom, TablePlan, ViewPlan};
use weir_dataflows::sql::{
    plan_drops, plan_job, plan_peek, script_without, CatalogLookup, DropKind, ObjectInfo, PlanError,
};
use weir_operators::repr::{Datum, Diff, Row, Schema, Tick};

use crate::shared::{lock, now_ms, sink_key, Command, DataflowId, Feeding, PeekCommand, Shared};

/// Why a control-plane request failed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Plan(PlanError),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    /// The view was replaced by a new version while being read; the read
    /// is planned again against the new version.
    #[error("view {0} was replaced while being read")]
    Replaced(String),
    #[error("{0}")]
    Internal(String),
}

/// Why the Kafka sources are not ready.
pub enum KafkaHealth {
    Disconnected(String),
    Behind(String),
}

/// Reads planned again when their view is replaced meanwhile, at most.
const REPLAN_ATTEMPTS: usize = 5;

/// A write position a read must reflect: "topic:partition:offset".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl Token {
    pub fn parse(s: &str) -> Result<Token, EngineError> {
        let bad = || EngineError::BadRequest {
            code: "bad_token",
            message: format!("\"{s}\" is not a token (expected topic:partition:offset, as ingest returns)"),
        };
        let mut parts = s.rsplitn(3, ':');
        let offset = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let partition = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let topic = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?.to_string();
        Ok(Token {
            topic,
            partition,
            offset,
        })
    }
    pub fn format(topic: &str, partition: u32, offset: u64) -> String {
        format!("{topic}:{partition}:{offset}")
    }
}

#[derive(Clone)]
enum ObjectKind {
    Table(TablePlan),
    View(ViewPlan),
}

#[derive(Clone)]
struct Object {
    job: String,
    kind: ObjectKind,
    /// The dataflow a view lives in.
    df: DataflowId,
    /// Dataflows whose sources feed this object (its own and imported ones).
    closure: BTreeSet<DataflowId>,
}

struct Job {
    sql: String,
    plan: JobPlan,
    df: DataflowId,
    created_ms: u64,
    /// A replacement (or rebuild) being built.
    replacing: Option<Replacing>,
    /// Records appended before this are skipped (a rebuild `--from` a time,
    /// or `'auto.offset.reset' = 'latest'`); 0 reads all of history.
    skip_before: Tick,
}

/// A new version of a job, built in the background while the old one serves.
struct Replacing {
    df: DataflowId,
    plan: JobPlan,
    started: Instant,
    /// The log topics its sources read, and the records before where they
    /// start reading: what the progress is measured against.
    topics: Vec<String>,
    skipped: u64,
}

#[derive(Default)]
struct Catalog {
    jobs: BTreeMap<String, Job>,
    objects: HashMap<String, Object>,
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

/// What the catalog keeps durably per job.
#[derive(Serialize, Deserialize)]
struct StoredJob {
    sql: String,
    created_ms: u64,
    /// Set by a rebuild: where its sources start (see `Job::skip_before`),
    /// kept so that a restart rebuilds the same views.
    #[serde(default)]
    from_ms: Option<u64>,
}

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

/// An answer read from a view.
pub struct ViewAnswer {
    pub view: String,
    pub as_of: Tick,
    pub columns: Vec<String>,
    pub rows: Vec<serde_json::Map<String, Value>>,
}

pub struct Engine {
    pub shared: Arc<Shared>,
    commands: Mutex<std::sync::mpsc::Sender<Command>>,
    catalog: Mutex<Catalog>,
    next_df: AtomicU64,
    next_peek: AtomicU64,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, commands: std::sync::mpsc::Sender<Command>) -> Arc<Engine> {
        Arc::new(Engine {
            shared,
            commands: Mutex::new(commands),
            catalog: Mutex::new(Catalog::default()),
            next_df: AtomicU64::new(1),
            next_peek: AtomicU64::new(1),
        })
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        lock(&self.commands)
            .send(cmd)
            .map_err(|_| EngineError::Internal("the dataflow workers have stopped".into()))?;
        self.shared.wake_workers();
        Ok(())
    }

    /// Re-installs the jobs of the durable catalog, in creation order.
    pub fn restore(self: &Arc<Self>) -> Result<usize, EngineError> {
        let jobs = self.shared.store.jobs().jobs();
        let n = jobs.len();
        for (name, bytes) in jobs {
            let stored: StoredJob = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Internal(format!("catalog entry for job {name} is unreadable: {e}")))?;
            self.install(&name, &stored.sql, false, Some(stored.created_ms), stored.from_ms)?;
        }
        Ok(n)
    }

    /// Plans and installs a job (`replace`: swaps an existing one once the
    /// new version has caught up; readers see the old views until then).
    pub fn submit(self: &Arc<Self>, name: &str, sql: &str, replace: bool) -> Result<Value, EngineError> {
        if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(EngineError::BadRequest {
                code: "invalid_name",
                message: format!("\"{name}\" is not a valid job name: 1-200 of letters, digits, _ - ."),
            });
        }
        self.install(name, sql, replace, None, None)?;
        self.job(name)
    }

    fn install(
        self: &Arc<Self>,
        name: &str,
        sql: &str,
        replace: bool,
        created: Option<u64>,
        from: Option<Tick>,
    ) -> Result<(), EngineError> {
        let mut cat = lock(&self.catalog);
        self.install_in(&mut cat, name, sql, replace, created, from)
    }

    /// Rebuilds a job's views from its sources' history, from `from` (0:
    /// all of it), into a new version while the old one serves; they swap
    /// once the new one has caught up (`GET /v1/jobs/{name}` shows how far).
    pub fn rebuild(self: &Arc<Self>, name: &str, from: Tick) -> Result<Value, EngineError> {
        {
            let mut cat = lock(&self.catalog);
            let sql = cat
                .jobs
                .get(name)
                .map(|j| j.sql.clone())
                .ok_or_else(|| EngineError::NotFound(format!("no job named {name}")))?;
            self.install_in(&mut cat, name, &sql, true, None, Some(from))?;
        }
        self.job(name)
    }

    /// [`Engine::install`] under the caller's hold of the catalog, so that
    /// several changes can be checked and applied as one.
    fn install_in(
        self: &Arc<Self>,
        cat: &mut Catalog,
        name: &str,
        sql: &str,
        replace: bool,
        created: Option<u64>,
        from: Option<Tick>,
    ) -> Result<(), EngineError> {
        let exists = cat.jobs.contains_key(name);
        if replace && !exists {
            return Err(EngineError::NotFound(format!("no job named {name}")));
        }
        if !replace && exists {
            return Err(EngineError::Conflict(format!(
                "a job named {name} exists: use PUT /v1/jobs/{name} to replace it"
            )));
        }
        if replace && cat.jobs.get(name).is_some_and(|j| j.replacing.is_some()) {
            return Err(EngineError::Conflict(format!("job {name} is already being replaced")));
        }
        let plan = if replace {
            plan_job(
                sql,
                &Without {
                    catalog: cat,
                    job: name,
                },
            )
        } else {
            plan_job(sql, &*cat)
        }
        .map_err(EngineError::Plan)?;
        if replace {
            if let Some(why) = replace_conflict(cat, name, &plan) {
                return Err(EngineError::Conflict(format!("job {name} cannot be replaced: {why}")));
            }
        }

        // The dataflow's sources: the job's tables, and the tables of other
        // jobs that its views read. Views of other jobs are imported.
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
                let Some(o) = cat.objects.get(dep) else { continue };
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
        for t in &sources {
            if t.kafka().is_some() {
                // Its mirror is created by the ingest, with the topic's partitions.
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
        let since = weir_connectors::log::clock();
        // Sinks first: a restarted sink resumes after the time it recorded,
        // which the replay must then feed exactly.
        let mut pins = Vec::new();
        for s in &plan.sinks {
            pins.extend(self.ensure_sink(s, df)?);
        }
        pins.sort_unstable();
        pins.dedup();
        let feeding = Feeding { since, pins };
        lock(&self.shared.since).insert(df, feeding.clone());
        let skip_before = from.unwrap_or(match plan.start {
            StartFrom::Earliest => 0,
            StartFrom::Latest => created_ms,
        });
        // The log topics a replacement's progress is measured on.
        let topics: Vec<String> = if replace {
            sources.iter().map(|t| t.topic().to_string()).collect()
        } else {
            Vec::new()
        };
        self.send(Command::Install {
            df,
            job: name.to_string(),
            sources,
            views: plan.views.clone(),
            imports,
            feeding,
            sinks: plan.sinks.clone(),
            skip_before,
        })?;
        if replace {
            // What the progress of the replacement is measured against
            // (a binary search per partition: replacements only).
            let skipped = topics
                .iter()
                .flat_map(|t| (0..self.shared.log.partitions(t)).map(move |p| (t, p)))
                .map(|(t, p)| self.shared.first_offset_from(t, p, skip_before))
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
            register(cat, name, &plan, df, &closure);
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

    /// Starts copying a Kafka table's topic into its mirror, unless that
    /// runs already (another job, or an earlier version, reads the table).
    fn ensure_ingest(&self, t: &TablePlan) -> Result<(), EngineError> {
        let Some(k) = t.kafka() else { return Ok(()) };
        let mut ingests = lock(&self.shared.ingests);
        if ingests.contains_key(&k.mirror) {
            return Ok(());
        }
        let config = SourceConfig {
            table: t.name.clone(),
            brokers: k.brokers.clone(),
            topic: k.topic.clone(),
            group_id: k.group_id.clone(),
            startup: match &k.startup {
                KafkaStartup::Earliest => Startup::Earliest,
                KafkaStartup::Latest => Startup::Latest,
                KafkaStartup::Timestamp(ms) => Startup::Timestamp(*ms),
                KafkaStartup::Offsets(given) => Startup::Offsets(given.iter().copied().collect()),
            },
            properties: k.properties.clone(),
            mirror: k.mirror.clone(),
        };
        let shared = Arc::downgrade(&self.shared);
        let wake = Arc::new(move || {
            if let Some(s) = shared.upgrade() {
                s.wake_workers();
            }
        });
        let ingest = start_ingest(config, self.shared.log.clone(), self.shared.store.meta(), wake)
            .map_err(|e| EngineError::Internal(format!("cannot start the Kafka source of table {}: {e}", t.name)))?;
        ingests.insert(k.mirror.clone(), ingest);
        Ok(())
    }

    /// Starts the writer of a sink unless it runs (an earlier version of
    /// the job has it: the new version takes over at the swap). Returns the
    /// times to replay exactly (see [`Feeding`]).
    fn ensure_sink(&self, s: &SinkPlan, df: DataflowId) -> Result<Vec<Tick>, EngineError> {
        let config = SinkConfig {
            name: s.name.clone(),
            brokers: s.brokers.clone(),
            topic: s.topic.clone(),
            envelope: match s.envelope {
                Envelope::Upsert => SinkEnvelope::Upsert,
                Envelope::Debezium => SinkEnvelope::Debezium,
            },
            exactly_once: s.exactly_once,
            partitions: s.partitions,
            properties: s.properties.clone(),
            schema: s.schema.clone(),
            key: s.key.clone(),
        };
        let pins = SinkProgress::new(self.shared.store.meta(), &config).pins();
        let mut writers = lock(&self.shared.sinks);
        if let std::collections::btree_map::Entry::Vacant(slot) = writers.entry(sink_key(s)) {
            let w = start_sink(config, self.shared.store.meta(), df)
                .map_err(|e| EngineError::Internal(format!("cannot start sink {}: {e}", s.name)))?;
            slot.insert(w);
        }
        Ok(pins)
    }

    /// Stops the writers of sinks no job (or replacement) has any more.
    fn prune_sinks(&self, cat: &Catalog) {
        let used: BTreeSet<String> = cat
            .jobs
            .values()
            .flat_map(|j| {
                j.plan
                    .sinks
                    .iter()
                    .chain(j.replacing.iter().flat_map(|r| &r.plan.sinks))
            })
            .map(sink_key)
            .collect();
        let stopped: Vec<Sink> = {
            let mut writers = lock(&self.shared.sinks);
            let gone: Vec<String> = writers.keys().filter(|k| !used.contains(*k)).cloned().collect();
            gone.iter().filter_map(|k| writers.remove(k)).collect()
        };
        let meta = self.shared.store.meta();
        for w in stopped {
            let progress = SinkProgress::new(meta.clone(), &w.config);
            // Stopped (and its last write finished) before it is forgotten.
            drop(w);
            if let Err(e) = progress.forget() {
                eprintln!("weir: cannot forget the progress of a dropped sink: {e}");
            }
        }
    }

    /// A sink, as shown in job status.
    fn sink_status(&self, s: &SinkPlan) -> Value {
        let writers = lock(&self.shared.sinks);
        let Some(w) = writers.get(&sink_key(s)) else {
            return json!({"name": s.name, "topic": s.topic, "state": "stopped"});
        };
        let st = &w.status;
        json!({
            "name": s.name,
            "from": s.from,
            "topic": s.topic,
            "envelope": format!("{:?}", s.envelope).to_lowercase(),
            "semantic": if s.exactly_once { "exactly-once" } else { "at-least-once" },
            "state": if st.failing.load(Ordering::SeqCst) { "retrying" } else { "running" },
            "written_as_of": st.written_as_of.load(Ordering::SeqCst),
            "records": st.records.load(Ordering::Relaxed),
            "queued_times": st.queued.load(Ordering::Relaxed),
            "errors": st.errors.load(Ordering::Relaxed),
            "last_error": *lock(&st.last_error),
        })
    }

    /// Stops the Kafka sources no table of the catalog (or of a replacement
    /// being built) reads any more.
    fn prune_ingests(&self, cat: &Catalog) {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for o in cat.objects.values() {
            if let ObjectKind::Table(t) = &o.kind {
                used.insert(t.topic());
            }
        }
        for j in cat.jobs.values() {
            for t in j.replacing.iter().flat_map(|r| &r.plan.tables) {
                used.insert(t.topic());
            }
        }
        let stopped: Vec<Ingest> = {
            let mut ingests = lock(&self.shared.ingests);
            let gone: Vec<String> = ingests.keys().filter(|m| !used.contains(m.as_str())).cloned().collect();
            gone.iter().filter_map(|m| ingests.remove(m)).collect()
        };
        // Dropping an ingest waits for its thread: outside the lock.
        drop(stopped);
    }

    /// The state of the Kafka sources: `Err` names those that cannot reach
    /// their broker, or else those still copying what the broker had.
    pub fn kafka_health(&self) -> Result<(), KafkaHealth> {
        let ingests = lock(&self.shared.ingests);
        let down: Vec<String> = ingests
            .values()
            .filter(|i| !i.status.connected.load(Ordering::SeqCst))
            .map(|i| {
                let why = lock(&i.status.last_error)
                    .clone()
                    .unwrap_or_else(|| "connecting".into());
                format!("table {} (Kafka topic {}): {why}", i.config.table, i.config.topic)
            })
            .collect();
        if !down.is_empty() {
            return Err(KafkaHealth::Disconnected(format!(
                "Kafka sources not connected: {}",
                down.join("; ")
            )));
        }
        let behind: Vec<String> = ingests
            .values()
            .filter_map(|i| {
                let lag: i64 = i.status.lag().iter().map(|(_, l)| l).sum();
                (lag > 0).then(|| {
                    format!(
                        "table {} is {lag} records behind topic {}",
                        i.config.table, i.config.topic
                    )
                })
            })
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(KafkaHealth::Behind(format!(
                "Kafka sources catching up: {}",
                behind.join("; ")
            )))
        }
    }

    /// A Kafka table's source, as shown in job status.
    fn kafka_status(&self, t: &TablePlan) -> Option<Value> {
        let k = t.kafka()?;
        let ingests = lock(&self.shared.ingests);
        let i = ingests.get(&k.mirror)?;
        let st = &i.status;
        let partitions: Vec<Value> = lock(&st.partitions)
            .iter()
            .map(|(p, (next, high))| json!({"partition": p, "next_offset": next, "high_watermark": high, "lag": (high - next).max(0)}))
            .collect();
        Some(json!({
            "topic": k.topic,
            "bootstrap.servers": k.brokers,
            "connected": st.connected.load(Ordering::SeqCst),
            "retries": st.retries.load(Ordering::Relaxed),
            "ingested": st.ingested.load(Ordering::Relaxed),
            "last_error": *lock(&st.last_error),
            "partitions": partitions,
        }))
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
                let Some(job) = cat.jobs.get_mut(&name) else { return };
                let Some(Replacing { df: new_df, plan, .. }) = job.replacing.take() else {
                    return;
                };
                let old_df = job.df;
                job.df = new_df;
                job.plan = plan.clone();
                cat.objects.retain(|_, o| o.job != name);
                register(&mut cat, &name, &plan, new_df, &closure);
                self.prune_ingests(&cat);
                // The new version's sinks take over where the old ones end.
                let writers = lock(&self.shared.sinks);
                for s in &plan.sinks {
                    if let Some(w) = writers.get(&sink_key(s)) {
                        let _ = w.sender().send(SinkMsg::Activate { version: new_df });
                    }
                }
                drop(writers);
                self.prune_sinks(&cat);
                old_df
            };
            let _ = self.send(Command::Drop { df: old });
            return;
        }
    }

    pub fn drop_job(&self, name: &str) -> Result<(), EngineError> {
        let mut cat = lock(&self.catalog);
        self.drop_job_in(&mut cat, name)
    }

    fn drop_job_in(&self, cat: &mut Catalog, name: &str) -> Result<(), EngineError> {
        let Some(job) = cat.jobs.get(name) else {
            return Err(EngineError::NotFound(format!("no job named {name}")));
        };
        if let Some(dep) = dependant(cat, name) {
            return Err(EngineError::Conflict(format!(
                "job {name} cannot be dropped: {dep} (of another job) reads its objects"
            )));
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
        for df in dfs {
            self.send(Command::Drop { df })?;
        }
        Ok(())
    }

    /// Sets the per-view gauges (rows, freshness lag) from the workers'
    /// progress, for a metrics scrape; dropped views disappear from them.
    pub fn refresh_view_gauges(&self) {
        let cat = lock(&self.catalog);
        let m = &self.shared.metrics;
        m.view_rows.reset();
        m.freshness_lag_ms.reset();
        m.partial_matches.reset();
        for g in [
            &m.kafka_connected,
            &m.kafka_lag,
            &m.kafka_retries,
            &m.kafka_ingested,
            &m.sink_records,
            &m.sink_errors,
            &m.sink_queued,
            &m.sink_written_as_of,
        ] {
            g.reset();
        }
        for i in lock(&self.shared.ingests).values() {
            let labels = [i.config.table.as_str(), i.config.topic.as_str()];
            let st = &i.status;
            for (g, v) in [
                (&m.kafka_connected, u64::from(st.connected.load(Ordering::SeqCst))),
                (&m.kafka_retries, st.retries.load(Ordering::Relaxed)),
                (&m.kafka_ingested, st.ingested.load(Ordering::Relaxed)),
            ] {
                g.with_label_values(&labels).set(v as i64);
            }
            for (p, lag) in st.lag() {
                m.kafka_lag
                    .with_label_values(&[labels[0], labels[1], &p.to_string()])
                    .set(lag);
            }
        }
        for w in lock(&self.shared.sinks).values() {
            let labels = [w.config.name.as_str(), w.config.topic.as_str()];
            let st = &w.status;
            for (g, v) in [
                (&m.sink_records, &st.records),
                (&m.sink_errors, &st.errors),
                (&m.sink_queued, &st.queued),
                (&m.sink_written_as_of, &st.written_as_of),
            ] {
                g.with_label_values(&labels).set(v.load(Ordering::SeqCst) as i64);
            }
        }
        let now = now_ms();
        for (name, o) in cat
            .objects
            .iter()
            .filter(|(_, o)| matches!(o.kind, ObjectKind::View(_)))
        {
            if let Some(rows) = self.shared.view_rows(o.df, name) {
                m.view_rows.with_label_values(&[name.as_str()]).set(rows);
            }
            if let Some(live) = self.shared.view_partial_matches(o.df, name) {
                m.partial_matches.with_label_values(&[name.as_str()]).set(live);
            }
            if let Some(t) = self.shared.complete_through(o.df, name) {
                m.freshness_lag_ms
                    .with_label_values(&[name.as_str()])
                    .set(now.saturating_sub(t) as i64);
            }
        }
    }

    /// Runs `DROP TABLE` / `DROP VIEW` statements as one change. Every name
    /// is checked first: it exists, it is of the kind named, and nothing
    /// outside the statements depends on it. Then each owning job is
    /// rebuilt from its script without those objects, like a replace (a
    /// job left with nothing is dropped). The objects disappear from reads
    /// at once; the rest of a rebuilt job is served by its old dataflow
    /// until the new one has caught up. The stored script loses the
    /// statements, so a restart does not bring them back.
    pub fn drop_objects(self: &Arc<Self>, sql: &str) -> Result<Value, EngineError> {
        let drops = plan_drops(sql).map_err(EngineError::Plan)?;
        let mut cat = lock(&self.catalog);
        let mut by_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut dropped = Vec::new();
        for d in &drops {
            let Some(o) = cat.objects.get(&d.name) else {
                if d.if_exists {
                    continue;
                }
                let code = match d.kind {
                    DropKind::Table => "unknown_table",
                    DropKind::View => "unknown_view",
                };
                return Err(EngineError::Plan(
                    d.error(code, format!("unknown {} \"{}\"", d.kind, d.name)),
                ));
            };
            let actual = match o.kind {
                ObjectKind::Table(_) => DropKind::Table,
                ObjectKind::View(_) => DropKind::View,
            };
            if actual != d.kind {
                return Err(EngineError::Plan(d.error(
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
                dropped.push(json!({"kind": actual.to_string(), "name": d.name, "job": o.job}));
            }
        }
        let all: BTreeSet<&str> = by_job.values().flatten().map(String::as_str).collect();
        let blocked = first_blocking_read(&cat, |reader, o, read, _| {
            (!all.contains(reader) && all.contains(read))
                .then(|| format!("cannot drop {read}: view {reader} (job {}) depends on it", o.job))
        });
        if let Some(why) = blocked {
            return Err(EngineError::Conflict(why));
        }
        // Every rebuilt job must plan and must not break another job's
        // reads; checked for all before anything changes.
        let mut changes = Vec::new();
        for (job, names) in &by_job {
            let Some(j) = cat.jobs.get(job) else { continue };
            if j.replacing.is_some() {
                return Err(EngineError::Conflict(format!(
                    "job {job} is being replaced: drop its objects once the replacement has caught up"
                )));
            }
            let rest = script_without(&j.sql, names).map_err(EngineError::Plan)?;
            if let Some(sql) = &rest {
                let plan = plan_job(sql, &Without { catalog: &cat, job }).map_err(|e| {
                    EngineError::Internal(format!("job {job} does not plan without the dropped objects: {e}"))
                })?;
                if let Some(why) = replace_conflict(&cat, job, &plan) {
                    return Err(EngineError::Conflict(format!(
                        "job {job} would be rebuilt without the dropped objects, but {why}"
                    )));
                }
            }
            changes.push((job.clone(), rest));
        }
        cat.objects.retain(|n, _| !all.contains(n.as_str()));
        let mut rebuilt = Vec::new();
        let mut jobs_dropped = Vec::new();
        for (job, rest) in changes {
            match rest {
                Some(sql) => {
                    let from = cat.jobs.get(&job).map(|j| j.skip_before);
                    self.install_in(&mut cat, &job, &sql, true, None, from)?;
                    rebuilt.push(job);
                }
                None => {
                    self.drop_job_in(&mut cat, &job)?;
                    jobs_dropped.push(job);
                }
            }
        }
        Ok(json!({"dropped": dropped, "jobs_rebuilt": rebuilt, "jobs_dropped": jobs_dropped}))
    }

    pub fn jobs(&self) -> Value {
        let names: Vec<String> = lock(&self.catalog).jobs.keys().cloned().collect();
        Value::Array(names.iter().filter_map(|n| self.job(n).ok()).collect())
    }

    pub fn job(&self, name: &str) -> Result<Value, EngineError> {
        let cat = lock(&self.catalog);
        let job = cat
            .jobs
            .get(name)
            .ok_or_else(|| EngineError::NotFound(format!("no job named {name}")))?;
        let dlq = self.shared.store.dead_letters().count_by_source();
        let objects: BTreeSet<String> = job
            .plan
            .tables
            .iter()
            .map(|t| t.name.clone())
            .chain(job.plan.views.iter().map(|v| v.name.clone()))
            .collect();
        let dead_letters: BTreeMap<&String, &u64> = dlq.iter().filter(|(k, _)| objects.contains(*k)).collect();
        let kafka: BTreeMap<&String, Value> = job
            .plan
            .tables
            .iter()
            .filter_map(|t| Some((&t.name, self.kafka_status(t)?)))
            .collect();
        let status = if job.replacing.is_some() {
            "replacing"
        } else if self.shared.caught_up(job.df, 0) {
            "running"
        } else {
            "catching_up"
        };
        let rebuild = job.replacing.as_ref().map(|r| self.progress(r));
        Ok(json!({
            "name": name,
            "sql": job.sql,
            "status": status,
            "rebuild": rebuild,
            "skip_before_ms": job.skip_before,
            "created_ms": job.created_ms,
            "tables": job.plan.tables.iter().map(|t| json!({"name": t.name, "topic": t.topic(), "primary_key": t.primary_key.as_ref().map(|k| k.iter().map(|&i| t.schema.columns[i].name.clone()).collect::<Vec<_>>())})).collect::<Vec<_>>(),
            "views": job.plan.views.iter().map(|v| json!({"name": v.name, "complete_through": self.shared.complete_through(job.df, &v.name)})).collect::<Vec<_>>(),
            "dead_letters": dead_letters,
            "kafka_sources": kafka,
            "sinks": job.plan.sinks.iter().map(|s| self.sink_status(s)).collect::<Vec<_>>(),
        }))
    }

    /// How far a replacement has read its sources' history: events read of
    /// those to read (new events count as they arrive), rate and ETA.
    fn progress(&self, r: &Replacing) -> Value {
        let end: u64 = r
            .topics
            .iter()
            .flat_map(|t| (0..self.shared.log.partitions(t)).map(move |p| (t, p)))
            .map(|(t, p)| self.shared.log.end_offset(t, p))
            .sum();
        let total = end.saturating_sub(r.skipped);
        let lag = {
            let lag = lock(&self.shared.lag);
            (0..self.shared.workers)
                .map(|w| lag.get(&(r.df, w)).copied())
                .collect::<Option<Vec<u64>>>()
                .map(|l| l.iter().sum::<u64>())
        };
        // Until every worker has reported, nothing is known to be read.
        let done = lag.map_or(0, |l| total.saturating_sub(l));
        let secs = r.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (rate > 0.0).then(|| (total - done) as f64 / rate);
        json!({
            "events_done": done,
            "events_total": total,
            "elapsed_s": (secs * 10.0).round() / 10.0,
            "rate_per_s": rate.round(),
            "eta_s": eta.map(|e| (e * 10.0).round() / 10.0),
        })
    }

    /// True once every installed job has caught up with the log.
    pub fn ready(&self) -> bool {
        let cat = lock(&self.catalog);
        cat.jobs.values().all(|j| self.shared.caught_up(j.df, 0))
    }

    pub fn views(&self) -> Value {
        let cat = lock(&self.catalog);
        let mut out: Vec<Value> = cat
            .objects
            .iter()
            .filter_map(|(name, o)| match &o.kind {
                ObjectKind::View(v) => Some(json!({
                    "name": name,
                    "job": o.job,
                    "columns": v.schema.columns.iter().map(|c| json!({"name": c.name, "type": c.ty.to_string(), "nullable": c.nullable})).collect::<Vec<_>>(),
                    "key": v.key.as_ref().map(|k| k.iter().map(|&i| v.schema.columns[i].name.clone()).collect::<Vec<_>>()),
                    "complete_through": self.shared.complete_through(o.df, name),
                    "rows": self.shared.view_rows(o.df, name),
                })),
                ObjectKind::Table(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Value::Array(out)
    }

    /// Reads a view: rows whose columns equal `filters`, at most `limit`,
    /// reflecting every write in `after`.
    pub async fn read_view(
        &self,
        view: &str,
        filters: &[(String, String)],
        limit: Option<usize>,
        opts: &ReadOptions,
    ) -> Result<ViewAnswer, EngineError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.read_view_once(view, filters, limit, opts, started).await {
                Err(EngineError::Replaced(_)) if attempt < REPLAN_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    /// One attempt of [`Engine::read_view`], planned against the view's
    /// current version: filters are resolved against its columns.
    async fn read_view_once(
        &self,
        view: &str,
        filters: &[(String, String)],
        limit: Option<usize>,
        opts: &ReadOptions,
        started: Instant,
    ) -> Result<ViewAnswer, EngineError> {
        let obj = self.view_object(view)?;
        let ObjectKind::View(plan) = &obj.kind else {
            return Err(EngineError::NotFound(format!("no view named {view}")));
        };
        let schema = plan.schema.clone();
        let mut conds: Vec<(usize, Datum)> = Vec::new();
        for (col, val) in filters {
            let i = schema.index_of(col).ok_or_else(|| EngineError::BadRequest {
                code: "unknown_column",
                message: format!("view {view} has no column \"{col}\""),
            })?;
            let d = if val == "null" {
                Datum::Null
            } else {
                cast(Datum::Text(val.clone()), schema.columns[i].ty).map_err(|e| EngineError::BadRequest {
                    code: "type_error",
                    message: format!("filter {col}={val}: {e}"),
                })?
            };
            conds.push((i, d));
        }
        // A filter on every key column is served from the index.
        let key = plan.key.as_ref().and_then(|cols| {
            cols.iter()
                .map(|c| conds.iter().find(|(i, _)| i == c).map(|(_, d)| d.clone()))
                .collect::<Option<Row>>()
        });
        let (as_of, rows) = self.peek(view, obj.df, key, opts, started).await?;
        let mut out: Vec<Row> = Vec::new();
        for (row, n) in rows {
            let keep = conds.iter().all(|(i, d)| match d {
                Datum::Null => row[*i].is_null(),
                d => sql_cmp(&row[*i], d) == Some(std::cmp::Ordering::Equal),
            });
            if keep {
                for _ in 0..n.max(0) {
                    out.push(row.clone());
                }
            }
        }
        weir_queries::eval::sort_rows(&mut out, &[]);
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(ViewAnswer {
            view: view.to_string(),
            as_of,
            columns: schema.columns.iter().map(|c| c.name.clone()).collect(),
            rows: out.iter().map(|r| encode_json(r, &schema)).collect(),
        })
    }

    /// `POST /v1/query`: one SELECT over one view.
    pub async fn query(&self, sql: &str, opts: &ReadOptions) -> Result<ViewAnswer, EngineError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.query_once(sql, opts, started).await {
                Err(EngineError::Replaced(_)) if attempt < REPLAN_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    async fn query_once(&self, sql: &str, opts: &ReadOptions, started: Instant) -> Result<ViewAnswer, EngineError> {
        // Planned and bound to the view's current version in one look at
        // the catalog.
        let (plan, df) = {
            let cat = lock(&self.catalog);
            let plan = plan_peek(sql, &ViewsOnly(&cat)).map_err(EngineError::Plan)?;
            let df = cat
                .objects
                .get(&plan.view)
                .map(|o| o.df)
                .ok_or_else(|| EngineError::NotFound(format!("no view named {}", plan.view)))?;
            (plan, df)
        };
        let (as_of, rows) = self.peek(&plan.view, df, None, opts, started).await?;
        let rows = weir_queries::eval::finish(&plan, rows).map_err(|e| EngineError::BadRequest {
            code: "evaluation_error",
            message: e.to_string(),
        })?;
        let schema = Schema {
            columns: plan.columns.clone(),
        };
        Ok(ViewAnswer {
            view: plan.view.clone(),
            as_of,
            columns: plan.columns.iter().map(|c| c.name.clone()).collect(),
            rows: rows.iter().map(|r| encode_json(r, &schema)).collect(),
        })
    }

    fn view_object(&self, view: &str) -> Result<Object, EngineError> {
        let cat = lock(&self.catalog);
        match cat.objects.get(view) {
            Some(o) if matches!(o.kind, ObjectKind::View(_)) => Ok(o.clone()),
            Some(_) => Err(EngineError::NotFound(format!(
                "{view} is a table, not a view: tables are read through views"
            ))),
            None => Err(EngineError::NotFound(format!("no view named {view}"))),
        }
    }

    /// Chooses the read time (complete on every worker, after every token),
    /// then collects every worker's part of version `df` of the view as of
    /// it; only the rows under `key` of its index when given.
    /// [`EngineError::Replaced`] when the view is no longer at version `df`.
    async fn peek(
        &self,
        view: &str,
        df: DataflowId,
        key: Option<Row>,
        opts: &ReadOptions,
        started: Instant,
    ) -> Result<(Tick, Vec<(Row, Diff)>), EngineError> {
        let timeout = opts.timeout;
        let deadline = started + timeout;
        let current = |engine: &Engine| {
            let obj = engine.view_object(view)?;
            if obj.df == df {
                Ok(obj)
            } else {
                Err(EngineError::Replaced(view.to_string()))
            }
        };
        let mut obj = current(self)?;
        // The read time, held until the rows are collected so that no
        // worker compacts its trace past it meanwhile.
        // The append ticks of the `after` records, looked up in the log once
        // each (a record not there yet is looked up again while waiting).
        let mut appended: Vec<Option<Tick>> = vec![None; opts.after.len()];
        let hold = loop {
            for (tick, t) in appended.iter_mut().zip(&opts.after) {
                if tick.is_none() {
                    *tick = self.shared.written_at(&t.topic, t.partition, t.offset);
                }
            }
            let required = appended.iter().try_fold(0, |r: Tick, tick| {
                let tick = (*tick)?;
                Some(
                    obj.closure
                        .iter()
                        .map(|df| self.shared.fed_in(*df, tick))
                        .fold(r, Tick::max),
                )
            });
            if let Some(r) = required {
                match self.shared.hold_read(obj.df, view, r, opts.as_of) {
                    Ok(Some(hold)) => break hold,
                    Ok(None) => {}
                    Err(since) => {
                        return Err(EngineError::BadRequest {
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
                self.shared.metrics.peeks.with_label_values(&[view, "timeout"]).inc();
                return Err(EngineError::Timeout(match self.shared.complete_through(obj.df, view) {
                    None => format!(
                        "view {view} has not produced its first complete time within {} ms",
                        timeout.as_millis()
                    ),
                    Some(_) => format!(
                        "view {view} did not reflect the given writes within {} ms; retry with a larger timeout_ms",
                        timeout.as_millis()
                    ),
                }));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            obj = current(self)?;
        };
        let as_of = hold.at;
        let id = self.next_peek.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.shared.peek_replies).insert(id, tx);
        let result = async {
            self.send(Command::Peek(PeekCommand {
                id,
                df: obj.df,
                view: view.to_string(),
                as_of,
                key,
            }))?;
            let mut rows = Vec::new();
            for _ in 0..self.shared.workers {
                let reply = tokio::time::timeout(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_secs(1)),
                    rx.recv(),
                )
                .await
                .map_err(|_| EngineError::Timeout(format!("reading view {view} timed out")))?
                .ok_or_else(|| EngineError::Internal("the dataflow workers have stopped".into()))?;
                // A worker finds the dataflow gone when a replace swapped
                // it out after the read time was chosen.
                rows.extend(reply.rows.map_err(|e| match current(self) {
                    Err(replaced @ EngineError::Replaced(_)) => replaced,
                    _ => EngineError::NotFound(e),
                })?);
            }
            Ok(rows)
        }
        .await;
        lock(&self.shared.peek_replies).remove(&id);
        drop(hold);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.shared.metrics.peeks.with_label_values(&[view, outcome]).inc();
        self.shared
            .metrics
            .peek_seconds
            .with_label_values(&[view])
            .observe(started.elapsed().as_secs_f64());
        Ok((as_of, result?))
    }

    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}

/// Only views are visible to queries.
struct ViewsOnly<'a>(&'a Catalog);

impl CatalogLookup for ViewsOnly<'_> {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        match self.0.objects.get(name)?.kind {
            ObjectKind::View(_) => self.0.lookup(name),
            ObjectKind::Table(_) => None,
        }
    }
}

fn register(cat: &mut Catalog, job: &str, plan: &JobPlan, df: DataflowId, closure: &BTreeSet<DataflowId>) {
    for t in &plan.tables {
        cat.objects.insert(
            t.name.clone(),
            Object {
                job: job.to_string(),
                kind: ObjectKind::Table(t.clone()),
                df,
                closure: closure.clone(),
            },
        );
    }
    for v in &plan.views {
        cat.objects.insert(
            v.name.clone(),
            Object {
                job: job.to_string(),
                kind: ObjectKind::View(v.clone()),
                df,
                closure: closure.clone(),
            },
        );
    }
}

/// Why replacing `job` by `plan` would break another job's reads, if it
/// would. Another job's dataflow holds this job's views (imported
/// arrangements), which a replacement rebuilds in a new dataflow; a table
/// is read by each job through its own source, so it only matters when the
/// new version drops or changes it.
fn replace_conflict(cat: &Catalog, job: &str, plan: &JobPlan) -> Option<String> {
    first_blocking_read(cat, |reader, o, read, dep| {
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
fn dependant(cat: &Catalog, job: &str) -> Option<String> {
    first_blocking_read(cat, |reader, o, _, dep| {
        (o.job != job && dep.job == job).then(|| format!("view {reader}"))
    })
}

/// Scans the views' reads: `blocks(reader, its object, read, the read
/// object)` says why a read stands in the way, if it does. Returns the
/// first reason in name order (one per reader), so messages are stable.
fn first_blocking_read(
    cat: &Catalog,
    blocks: impl Fn(&str, &Object, &str, &Object) -> Option<String>,
) -> Option<String> {
    let mut found: Vec<String> = cat
        .objects
        .iter()
        .filter_map(|(reader, o)| {
            let ObjectKind::View(v) = &o.kind else { return None };
            v.depends_on
                .iter()
                .find_map(|read| blocks(reader, o, read, cat.objects.get(read)?))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}
