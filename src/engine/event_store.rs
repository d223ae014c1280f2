//! The event store's reads and the dead letters, as the API serves them.

use std::collections::BTreeMap;

use weir_connectors::dead_letters::DeadLetter;
use weir_connectors::log::{LogRecord, TopicInfo};

use weir_queries::ReadError;

use super::{Engine, EngineError};

/// A page of dead letters.
pub struct DeadLetterPage {
    pub total: u64,
    pub by_source: BTreeMap<String, u64>,
    /// (cursor, letter), oldest first.
    pub letters: Vec<(u64, DeadLetter)>,
}

impl Engine {
    /// Every topic of the log with its end offsets.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.shared.log.topics()
    }

    /// Up to `limit` records of one partition of a topic from `from` on.
    pub fn read_topic(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<LogRecord>, EngineError> {
        let log = &self.shared.log;
        if log.topic(topic).is_none() {
            return Err(ReadError::NotFound(format!("no topic named {topic}")).into());
        }
        log.read(topic, partition, from, limit)
            .map_err(|e| EngineError::BadRequest {
                code: "bad_request",
                message: e.to_string(),
            })
    }

    /// Up to `limit` dead letters after cursor `after`.
    pub fn dead_letters(&self, after: Option<u64>, limit: usize) -> Result<DeadLetterPage, EngineError> {
        let dl = self.shared.store.dead_letters();
        // Counted before listed: a letter is counted only once written, so
        // the page lists every letter its counts include (one recorded in
        // between is listed, not yet counted).
        let total = dl.len();
        let by_source = dl.count_by_source();
        let letters = dl
            .list(after, limit)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(DeadLetterPage {
            total,
            by_source,
            letters,
        })
    }

    /// The engine's metrics, for the HTTP layer to count what it serves.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// The Prometheus text of the engine's metrics, gauges refreshed.
    pub fn metrics_text(&self) -> String {
        self.refresh_view_gauges();
        self.shared.metrics.render()
    }
}
