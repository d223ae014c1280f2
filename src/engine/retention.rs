//! Retention, the control plane's side: the policies users set per topic,
//! and the pass that trims the log by them, never below what a dataflow
//! still needs: a topic's records go only once every dataflow that reads
//! it has a snapshot past them (DESIGN.md §4, "Durable state").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_connectors::compaction::compact;
use weir_connectors::log::Held;
use weir_connectors::retention::{keep_from, Retention, RetentionPolicy};
use weir_connectors::source::TableDecoder;
use weir_dataflows::plan::TablePlan;
use weir_operators::repr::Tick;

use super::{Engine, EngineError};
use crate::shared::lock;
use crate::worker::table_format;

/// A topic's retention and what it holds.
#[derive(Debug, Serialize)]
pub struct TopicRetention {
    pub topic: String,
    pub policy: RetentionPolicy,
    pub held: Held,
    /// The oldest time a dataflow reading the topic still needs (records
    /// from it on are kept whatever the policy says); `null`: none reads it.
    pub needed_from: Option<Tick>,
    /// Under a compacting policy, why compaction is not running (it needs
    /// every table reading the topic to be an upsert table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction_held: Option<String>,
}

impl Engine {
    fn retention(&self) -> Retention {
        Retention::new(self.shared.store.meta())
    }

    /// Applies the job's tables' `WITH ('retention' = …)` to their topics
    /// (a Kafka table's copy included). A table without the option leaves
    /// its topic's policy as it is.
    pub(super) fn apply_table_retention(&self, tables: &[weir_dataflows::plan::TablePlan]) -> Result<(), EngineError> {
        for t in tables {
            if let Some(r) = t.retention {
                let policy = RetentionPolicy {
                    max_age_ms: r.max_age_ms,
                    max_bytes: r.max_bytes,
                    compact: r.compact,
                };
                self.retention()
                    .set(t.topic(), policy)
                    .map_err(|e| EngineError::Internal(format!("cannot store the retention of {}: {e}", t.topic())))?;
            }
        }
        Ok(())
    }

    /// Sets a topic's retention (a policy with no limits keeps everything).
    pub fn set_retention(&self, topic: &str, policy: RetentionPolicy) -> Result<TopicRetention, EngineError> {
        if self.shared.log.topic(topic).is_none() {
            return Err(weir_queries::ReadError::NotFound(format!("no topic named {topic}")).into());
        }
        self.retention()
            .set(topic, policy)
            .map_err(|e| EngineError::Internal(format!("cannot store the retention of {topic}: {e}")))?;
        self.trim_topic(topic)?;
        self.topic_retention(topic)
    }

    /// A topic's policy, what it holds and what its readers need.
    pub fn topic_retention(&self, topic: &str) -> Result<TopicRetention, EngineError> {
        let policy = self
            .retention()
            .get(topic)
            .map_err(|e| EngineError::Internal(format!("cannot read the retention of {topic}: {e}")))?;
        let compaction_held = if policy.compact {
            self.compaction_readers(topic).err()
        } else {
            None
        };
        Ok(TopicRetention {
            topic: topic.to_string(),
            policy,
            held: self.shared.log.held(topic),
            needed_from: self.needed_from().get(topic).copied(),
            compaction_held,
        })
    }

    /// Per topic read by some dataflow: the oldest time one of them still
    /// needs. A dataflow needs what comes after its last snapshot; one
    /// without a snapshot (or being rebuilt) needs all of it, from 0.
    fn needed_from(&self) -> BTreeMap<String, Tick> {
        let cat = lock(&self.catalog);
        let fingerprints = lock(&self.fingerprints);
        let mut needed: BTreeMap<String, Tick> = BTreeMap::new();
        for (name, job) in &cat.jobs {
            let snapshot = self
                .shared
                .snapshots
                .last(name)
                .filter(|m| fingerprints.get(&job.df) == Some(&m.fingerprint));
            let from = match (&job.replacing, snapshot) {
                (None, Some(m)) => m.at.saturating_add(1),
                _ => 0,
            };
            for t in cat.inputs(&job.plan).sources {
                let e = needed.entry(t.topic().to_string()).or_insert(from);
                *e = (*e).min(from);
            }
            if let Some(r) = &job.replacing {
                for t in cat.inputs(&r.plan).sources {
                    needed.insert(t.topic().to_string(), 0);
                }
            }
        }
        needed
    }

    /// The decoders of every table reading `topic` (of the jobs and of the
    /// versions replacing them), for key compaction; why it cannot run when
    /// some reader is not an upsert table, or none reads the topic.
    fn compaction_readers(&self, topic: &str) -> Result<Vec<TableDecoder>, String> {
        let cat = lock(&self.catalog);
        let mut tables: BTreeMap<String, TablePlan> = BTreeMap::new();
        for job in cat.jobs.values() {
            let plans = std::iter::once(&job.plan).chain(job.replacing.iter().map(|r| &r.plan));
            for plan in plans {
                for t in cat.inputs(plan).sources.into_iter().filter(|t| t.topic() == topic) {
                    tables.insert(t.name.clone(), t);
                }
            }
        }
        if let Some(t) = tables.values().find(|t| t.primary_key.is_none()) {
            return Err(format!(
                "table {} reads topic {topic} as append-only: compaction would change it",
                t.name
            ));
        }
        if tables.is_empty() {
            return Err(format!("no table reads topic {topic}: its key is not known"));
        }
        Ok(tables.values().map(|t| TableDecoder::new(table_format(t))).collect())
    }

    /// Trims one topic by its policy, then compacts it if the policy says
    /// so; returns the records removed.
    fn trim_topic(&self, topic: &str) -> Result<u64, EngineError> {
        let policy = self
            .retention()
            .get(topic)
            .map_err(|e| EngineError::Internal(format!("cannot read the retention of {topic}: {e}")))?;
        if policy.keeps_everything() {
            return Ok(0);
        }
        let floor = self.needed_from().get(topic).copied().unwrap_or(Tick::MAX);
        let log = &self.shared.log;
        let keep = keep_from(log, topic, &policy, log.now(), floor);
        let mut removed = log
            .trim(topic, &keep)
            .map_err(|e| EngineError::Internal(format!("cannot trim {topic}: {e}")))?;
        if policy.compact {
            if let Ok(readers) = self.compaction_readers(topic) {
                removed += compact(log, topic, &readers, floor)
                    .map_err(|e| EngineError::Internal(format!("cannot compact {topic}: {e}")))?
                    .removed;
            }
        }
        Ok(removed)
    }

    /// Trims every topic by its policy.
    pub fn trim_all(&self) {
        for t in self.shared.log.topics() {
            if let Err(e) = self.trim_topic(&t.name) {
                eprintln!("weir: retention: {e}");
            }
        }
    }

    /// Trims the log by the retention policies every `every`.
    pub fn start_retention(self: &Arc<Self>, every: Duration) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let e = Arc::clone(&engine);
                let _ = tokio::task::spawn_blocking(move || e.trim_all()).await;
            }
        });
    }

    /// Refuses a rebuild from a time whose history retention removed.
    pub(super) fn check_history_held(&self, topics: &[String], from: Tick) -> Result<(), EngineError> {
        for t in topics {
            let held = self.shared.log.held(t);
            if held.trimmed_through > 0 && from <= held.trimmed_through {
                return Err(EngineError::BadRequest {
                    code: "history_trimmed",
                    message: format!(
                        "topic {t} holds its history only after {} (retention removed the records before): rebuild from {} or later",
                        held.trimmed_through,
                        held.trimmed_through + 1
                    ),
                });
            }
        }
        Ok(())
    }
}
