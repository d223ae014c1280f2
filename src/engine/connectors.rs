//! The connectors the jobs need: a Kafka source's copy per Kafka table and
//! a writer per sink, started when a job needs them, stopped when no job
//! (or replacement) does, and their health for readiness.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use weir_connectors::kafka::{start_ingest, Ingest, SourceConfig, Startup};
use weir_connectors::sink::{start_sink, Sink, SinkConfig, SinkEnvelope, SinkProgress};
use weir_dataflows::catalog::{Catalog, DataflowId, ObjectKind};
use weir_dataflows::plan::{Envelope, KafkaStartup, SinkPlan, TablePlan};
use weir_operators::repr::Tick;

use super::{Engine, EngineError};
use crate::shared::{lock, sink_key};

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

    /// Starts the writer of a sink unless it runs (an earlier version of
    /// the job has it: the new version takes over at the swap). Returns the
    /// times to replay exactly (see [`weir_connectors::source::Feeding`]).
    pub(super) fn ensure_sink(&self, s: &SinkPlan, df: DataflowId) -> Result<Vec<Tick>, EngineError> {
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
        let mut writers = self.shared.connectors.sinks();
        if let std::collections::btree_map::Entry::Vacant(slot) = writers.entry(sink_key(s)) {
            let w = start_sink(config, self.shared.store.meta(), df)
                .map_err(|e| EngineError::Internal(format!("cannot start sink {}: {e}", s.name)))?;
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

    /// Stops the Kafka sources no table of the catalog (or of a replacement
    /// being built) reads any more.
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
