//! The connectors the jobs need: a Kafka source's copy per Kafka table and
//! a writer per sink (Kafka or HTTP actions), started when a job needs them, stopped when no job
//! (or replacement) does, and their health for readiness.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir_connectors::action::backoff::Backoff;
use weir_connectors::action::{start_action_sink, ActionConfig};
use weir_connectors::kafka::{start_ingest, Ingest, SourceConfig, Startup};
use weir_connectors::schedule::{start_schedule, Schedule};
use weir_connectors::sink::{start_sink, Sink, SinkConfig, SinkEnvelope, SinkProgress};
use weir_dataflows::catalog::{Catalog, DataflowId, ObjectKind};
use weir_dataflows::plan::{Envelope, HttpSinkPlan, KafkaSinkPlan, KafkaStartup, SinkPlan, SinkTarget, TablePlan};
use weir_operators::repr::Tick;

use super::{Engine, EngineError};
use crate::shared::{lock, sink_key};

fn kafka_config(s: &SinkPlan, k: &KafkaSinkPlan) -> SinkConfig {
    SinkConfig {
        name: s.name.clone(),
        brokers: k.brokers.clone(),
        topic: k.topic.clone(),
        envelope: match k.envelope {
            Envelope::Upsert => SinkEnvelope::Upsert,
            Envelope::Debezium => SinkEnvelope::Debezium,
        },
        exactly_once: k.exactly_once,
        partitions: k.partitions,
        properties: k.properties.clone(),
        schema: s.schema.clone(),
        key: s.key.clone(),
    }
}

fn action_config(s: &SinkPlan, h: &HttpSinkPlan) -> ActionConfig {
    let ms = Duration::from_millis;
    ActionConfig {
        name: s.name.clone(),
        url: h.url.clone(),
        method: h.method.clone(),
        headers: h.headers.clone(),
        on_insert: h.on_insert,
        on_update: h.on_update,
        on_delete: h.on_delete,
        max_in_flight: h.max_in_flight as usize,
        timeout: ms(h.timeout_ms),
        attempts: h.retry_attempts,
        backoff: Backoff {
            initial: ms(h.retry_initial_ms),
            max: ms(h.retry_max_delay_ms),
        },
        breaker_failures: h.breaker_failures,
        breaker_cooldown: ms(h.breaker_cooldown_ms),
        max_wait: ms(h.max_wait_ms),
        fallback_topic: h.fallback_topic.clone(),
        fallback_url: h.fallback_url.clone(),
        response_topic: h.response_topic.clone(),
        schema: s.schema.clone(),
        key: s.key.clone(),
    }
}

/// Why the Kafka sources are not ready.
pub enum KafkaHealth {
    Disconnected(String),
    Behind(String),
}

impl Engine {
    /// Starts copying a Kafka table's topic into its copy, unless that
    /// runs already (another job, or an earlier version, reads the table).
    pub(super) fn ensure_ingest(&self, t: &TablePlan) -> Result<(), EngineError> {
        let Some(k) = t.kafka() else { return Ok(()) };
        let mut ingests = self.shared.connectors.ingests();
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
                s.wakers.wake();
            }
        });
        let ingest = start_ingest(config, self.shared.log.clone(), self.shared.store.meta(), wake)
            .map_err(|e| EngineError::Internal(format!("cannot start the Kafka source of table {}: {e}", t.name)))?;
        ingests.insert(k.mirror.clone(), ingest);
        Ok(())
    }

    /// Starts appending a schedule table's ticks, unless that runs already.
    pub(super) fn ensure_schedule(&self, t: &TablePlan) -> Result<(), EngineError> {
        let Some(s) = t.schedule() else { return Ok(()) };
        let mut schedules = self.shared.connectors.schedules();
        if schedules.contains_key(&s.topic) {
            return Ok(());
        }
        let shared = Arc::downgrade(&self.shared);
        let wake = Arc::new(move || {
            if let Some(s) = shared.upgrade() {
                s.wakers.wake();
            }
        });
        let schedule = start_schedule(
            s.topic.clone(),
            s.interval_ms,
            self.shared.log.clone(),
            self.shared.store.meta(),
            wake,
        )
        .map_err(|e| EngineError::Internal(format!("cannot start the schedule of table {}: {e}", t.name)))?;
        schedules.insert(s.topic.clone(), schedule);
        Ok(())
    }

    /// Starts the writer of a sink unless it runs (an earlier version of
    /// the job has it: the new version takes over at the swap). Returns the
    /// times to replay exactly (see [`weir_connectors::source::Feeding`]).
    pub(super) fn ensure_sink(&self, s: &SinkPlan, df: DataflowId) -> Result<Vec<Tick>, EngineError> {
        let pins = SinkProgress::new(self.shared.store.meta(), &s.name, s.destination()).pins();
        let mut writers = self.shared.connectors.sinks();
        if let std::collections::btree_map::Entry::Vacant(slot) = writers.entry(sink_key(s)) {
            let started = match &s.target {
                SinkTarget::Kafka(k) => start_sink(kafka_config(s, k), self.shared.store.meta(), df),
                SinkTarget::Http(h) => start_action_sink(action_config(s, h), &self.shared.store, df),
            };
            let w = started.map_err(|e| EngineError::Internal(format!("cannot start sink {}: {e}", s.name)))?;
            slot.insert(w);
        }
        Ok(pins)
    }

    /// Stops the writers of sinks no job (or replacement) has any more.
    pub(super) fn prune_sinks(&self, cat: &Catalog) {
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
            let mut writers = self.shared.connectors.sinks();
            let gone: Vec<String> = writers.keys().filter(|k| !used.contains(*k)).cloned().collect();
            gone.iter().filter_map(|k| writers.remove(k)).collect()
        };
        for w in stopped {
            // Stopped (and its last write finished) before it is forgotten.
            if let Err(e) = w.stop_and_forget() {
                eprintln!("weir: cannot forget the progress of a dropped sink: {e}");
            }
        }
    }

    /// Stops the Kafka sources and schedules no table of the catalog (or of
    /// a replacement being built) reads any more.
    pub(super) fn prune_ingests(&self, cat: &Catalog) {
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
            let mut ingests = self.shared.connectors.ingests();
            let gone: Vec<String> = ingests.keys().filter(|m| !used.contains(m.as_str())).cloned().collect();
            gone.iter().filter_map(|m| ingests.remove(m)).collect()
        };
        // Dropping an ingest waits for its thread: outside the lock.
        drop(stopped);
        let stopped: Vec<Schedule> = {
            let mut schedules = self.shared.connectors.schedules();
            let gone: Vec<String> = schedules
                .keys()
                .filter(|t| !used.contains(t.as_str()))
                .cloned()
                .collect();
            gone.iter().filter_map(|t| schedules.remove(t)).collect()
        };
        drop(stopped);
    }

    /// The state of the Kafka sources: `Err` names those that cannot reach
    /// their broker, or else those still copying what the broker had.
    pub fn kafka_health(&self) -> Result<(), KafkaHealth> {
        let ingests = self.shared.connectors.ingests();
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
}

#[cfg(test)]
mod tests {
    use weir_dataflows::catalog::Catalog;
    use weir_dataflows::sql::plan_job;

    /// The planner names a Kafka table's copy; the log reserves the prefix
    /// the API refuses to write. The two must agree.
    #[test]
    fn kafka_copies_are_reserved_topics() {
        let plan = plan_job(
            "CREATE TABLE t (id BIGINT) WITH (connector = 'kafka', 'bootstrap.servers' = 'b:9092', topic = 't', format = 'json');",
            &Catalog::default(),
        )
        .expect("the table plans");
        let copy = plan.tables[0].topic();
        assert!(copy.starts_with(weir_connectors::log::RESERVED_PREFIX), "{copy}");
        assert!(super::Engine::check_writable(copy).is_err());
    }
}
