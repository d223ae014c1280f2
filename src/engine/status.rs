//! Typed answers of the control plane: job status (with its connectors and
//! a rebuild's progress), the list of views, readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde::Serialize;
use weir_dataflows::catalog::Replacing;
use weir_dataflows::plan::{SinkPlan, SinkTarget, TablePlan};
use weir_operators::repr::{Schema, Tick};

use super::{Engine, EngineError};
use crate::shared::{lock, sink_key};

#[derive(Serialize)]
pub struct JobStatus {
    name: String,
    pub sql: String,
    /// `running`, `catching_up` or `replacing`.
    status: &'static str,
    rebuild: Option<RebuildProgress>,
    skip_before_ms: Tick,
    created_ms: u64,
    tables: Vec<TableStatus>,
    views: Vec<ViewProgressStatus>,
    /// Dead letters per table or view of the job.
    dead_letters: BTreeMap<String, u64>,
    /// Per Kafka table.
    kafka_sources: BTreeMap<String, KafkaSourceStatus>,
    sinks: Vec<SinkStatus>,
    /// Its snapshots: the last one written, what this run restored.
    snapshots: super::SnapshotStatus,
}

#[derive(Serialize)]
pub struct TableStatus {
    name: String,
    topic: String,
    primary_key: Option<Vec<String>>,
    /// What its topic holds (records, bytes, what retention removed).
    held: weir_connectors::log::Held,
}

#[derive(Serialize)]
pub struct ViewProgressStatus {
    name: String,
    complete_through: Option<Tick>,
}

/// How far a replacement has read its sources' history.
#[derive(Serialize)]
pub struct RebuildProgress {
    events_done: u64,
    events_total: u64,
    elapsed_s: f64,
    rate_per_s: f64,
    eta_s: Option<f64>,
}

#[derive(Serialize)]
pub struct KafkaSourceStatus {
    topic: String,
    #[serde(rename = "bootstrap.servers")]
    brokers: String,
    connected: bool,
    retries: u64,
    ingested: u64,
    last_error: Option<String>,
    partitions: Vec<KafkaPartitionStatus>,
}

#[derive(Serialize)]
pub struct KafkaPartitionStatus {
    partition: i32,
    next_offset: i64,
    high_watermark: i64,
    lag: i64,
}

#[derive(Serialize)]
pub struct SinkStatus {
    name: String,
    /// `kafka` or `http`.
    connector: &'static str,
    /// The topic, or the URL template.
    destination: String,
    /// `running`, `retrying` or `stopped`.
    state: &'static str,
    /// Absent while the sink's writer is stopped.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    writer: Option<SinkWriterStatus>,
}

#[derive(Serialize)]
pub struct SinkWriterStatus {
    from: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    kafka: Option<KafkaSinkStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<ActionSinkStatus>,
    /// The last time written (to the topic; into the outbox of an action
    /// sink).
    written_as_of: u64,
    /// Records written (requests taken in, for an action sink).
    records: u64,
    queued_times: u64,
    errors: u64,
    last_error: Option<String>,
}

#[derive(Serialize)]
pub struct KafkaSinkStatus {
    envelope: String,
    semantic: &'static str,
}

/// An action sink's deliveries and circuit, as job status shows them.
#[derive(Serialize)]
pub struct ActionSinkStatus {
    delivered: u64,
    fallback_delivered: u64,
    failed: u64,
    retries: u64,
    in_flight: u64,
    /// Requests taken in whose outcome is not yet recorded.
    pending: u64,
    /// `closed`, `open` or `half_open`.
    circuit: &'static str,
    circuit_opened: u64,
    mean_latency_ms: Option<f64>,
    last_failure: Option<String>,
}

fn action_status(a: &weir_connectors::action::ActionStatus) -> ActionSinkStatus {
    let count = a.latency_count.load(Ordering::Relaxed);
    ActionSinkStatus {
        delivered: a.delivered.load(Ordering::Relaxed),
        fallback_delivered: a.fallback_delivered.load(Ordering::Relaxed),
        failed: a.failed.load(Ordering::Relaxed),
        retries: a.retries.load(Ordering::Relaxed),
        in_flight: a.in_flight.load(Ordering::Relaxed),
        pending: a.pending.load(Ordering::Relaxed),
        circuit: match a.breaker.load(Ordering::Relaxed) {
            1 => "open",
            2 => "half_open",
            _ => "closed",
        },
        circuit_opened: a.breaker_opened.load(Ordering::Relaxed),
        mean_latency_ms: (count > 0).then(|| a.latency_ms_sum.load(Ordering::Relaxed) as f64 / count as f64),
        last_failure: lock(&a.last_failure).clone(),
    }
}

/// A view, as `GET /v1/views` lists it.
#[derive(Serialize)]
pub struct ViewInfo {
    name: String,
    job: String,
    columns: Vec<ColumnInfo>,
    key: Option<Vec<String>>,
    complete_through: Option<Tick>,
    pub rows: Option<i64>,
}

#[derive(Serialize)]
pub struct ColumnInfo {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    nullable: bool,
}

fn column_names(schema: &Schema, cols: &Option<Vec<usize>>) -> Option<Vec<String>> {
    cols.as_ref()
        .map(|k| k.iter().map(|&i| schema.columns[i].name.clone()).collect())
}

impl Engine {
    pub fn jobs(&self) -> Vec<JobStatus> {
        let names: Vec<String> = lock(&self.catalog).jobs.keys().cloned().collect();
        names.iter().filter_map(|n| self.job(n).ok()).collect()
    }

    pub fn job(&self, name: &str) -> Result<JobStatus, EngineError> {
        let cat = lock(&self.catalog);
        let job = cat.jobs.get(name).ok_or_else(|| EngineError::no_job(name))?;
        let dlq = self.shared.store.dead_letters().count_by_source();
        let objects: BTreeSet<&String> = job
            .plan
            .tables
            .iter()
            .map(|t| &t.name)
            .chain(job.plan.views.iter().map(|v| &v.name))
            .collect();
        let status = if job.replacing.is_some() {
            "replacing"
        } else if self.shared.caught_up(job.df, 0) {
            "running"
        } else {
            "catching_up"
        };
        Ok(JobStatus {
            name: name.to_string(),
            sql: job.sql.clone(),
            status,
            rebuild: job.replacing.as_ref().map(|r| self.progress(r)),
            skip_before_ms: job.skip_before,
            created_ms: job.created_ms,
            tables: job
                .plan
                .tables
                .iter()
                .map(|t| TableStatus {
                    name: t.name.clone(),
                    topic: t.topic().to_string(),
                    primary_key: column_names(&t.schema, &t.primary_key),
                    held: self.shared.log.held(t.topic()),
                })
                .collect(),
            views: job
                .plan
                .views
                .iter()
                .map(|v| ViewProgressStatus {
                    name: v.name.clone(),
                    complete_through: self.shared.frontiers.complete_through(job.df, &v.name),
                })
                .collect(),
            dead_letters: dlq.into_iter().filter(|(k, _)| objects.contains(k)).collect(),
            kafka_sources: job
                .plan
                .tables
                .iter()
                .filter_map(|t| Some((t.name.clone(), self.kafka_status(t)?)))
                .collect(),
            sinks: job.plan.sinks.iter().map(|s| self.sink_status(s)).collect(),
            snapshots: self.snapshot_status(name, job.df),
        })
    }

    /// A sink, as shown in job status.
    fn sink_status(&self, s: &SinkPlan) -> SinkStatus {
        let (kind, destination) = match &s.target {
            SinkTarget::Kafka(k) => ("kafka", k.topic.clone()),
            SinkTarget::Http(h) => ("http", h.url.clone()),
        };
        let writers = self.shared.connectors.sinks();
        let Some(w) = writers.get(&sink_key(s)) else {
            return SinkStatus {
                name: s.name.clone(),
                connector: kind,
                destination,
                state: "stopped",
                writer: None,
            };
        };
        let st = &w.status;
        let (kafka, http) = match &s.target {
            SinkTarget::Kafka(k) => (
                Some(KafkaSinkStatus {
                    envelope: format!("{:?}", k.envelope).to_lowercase(),
                    semantic: if k.exactly_once {
                        "exactly-once"
                    } else {
                        "at-least-once"
                    },
                }),
                None,
            ),
            SinkTarget::Http(_) => (None, w.action.as_deref().map(action_status)),
        };
        let status = SinkStatus {
            name: s.name.clone(),
            connector: kind,
            destination,
            state: if st.failing.load(Ordering::SeqCst) {
                "retrying"
            } else {
                "running"
            },
            writer: Some(SinkWriterStatus {
                from: s.from.clone(),
                kafka,
                http,
                written_as_of: st.written_as_of.load(Ordering::SeqCst),
                records: st.records.load(Ordering::Relaxed),
                queued_times: st.queued.load(Ordering::Relaxed),
                errors: st.errors.load(Ordering::Relaxed),
                last_error: lock(&st.last_error).clone(),
            }),
        };
        status
    }

    /// A Kafka table's source, as shown in job status.
    fn kafka_status(&self, t: &TablePlan) -> Option<KafkaSourceStatus> {
        let k = t.kafka()?;
        let ingests = self.shared.connectors.ingests();
        let i = ingests.get(&k.mirror)?;
        let st = &i.status;
        let partitions = lock(&st.partitions)
            .iter()
            .map(|(p, (next, high))| KafkaPartitionStatus {
                partition: *p,
                next_offset: *next,
                high_watermark: *high,
                lag: (high - next).max(0),
            })
            .collect();
        let status = KafkaSourceStatus {
            topic: k.topic.clone(),
            brokers: k.brokers.clone(),
            connected: st.connected.load(Ordering::SeqCst),
            retries: st.retries.load(Ordering::Relaxed),
            ingested: st.ingested.load(Ordering::Relaxed),
            last_error: lock(&st.last_error).clone(),
            partitions,
        };
        Some(status)
    }

    /// How far a replacement has read its sources' history: events read of
    /// those to read (new events count as they arrive), rate and ETA.
    fn progress(&self, r: &Replacing) -> RebuildProgress {
        let log = &self.shared.log;
        let end: u64 = r
            .topics
            .iter()
            .flat_map(|t| (0..log.partitions(t)).map(move |p| (t, p)))
            .map(|(t, p)| log.end_offset(t, p))
            .sum();
        let total = end.saturating_sub(r.skipped);
        // Until every worker has reported, nothing is known to be read.
        let done = self.shared.sources.lag(r.df).map_or(0, |l| total.saturating_sub(l));
        let secs = r.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (rate > 0.0).then(|| (total - done) as f64 / rate);
        RebuildProgress {
            events_done: done,
            events_total: total,
            elapsed_s: (secs * 10.0).round() / 10.0,
            rate_per_s: rate.round(),
            eta_s: eta.map(|e| (e * 10.0).round() / 10.0),
        }
    }

    /// True once every installed job has caught up with the log.
    pub fn ready(&self) -> bool {
        let cat = lock(&self.catalog);
        cat.jobs.values().all(|j| self.shared.caught_up(j.df, 0))
    }

    /// The views, sorted by name.
    pub fn views(&self) -> Vec<ViewInfo> {
        self.view_shapes()
            .into_iter()
            .map(|v| ViewInfo {
                columns: v
                    .schema
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        ty: c.ty.to_string(),
                        nullable: c.nullable,
                    })
                    .collect(),
                key: column_names(&v.schema, &v.key),
                complete_through: self.shared.frontiers.complete_through(v.df, &v.name),
                rows: self.shared.frontiers.view_rows(v.df, &v.name),
                name: v.name,
                job: v.job,
            })
            .collect()
    }
}
