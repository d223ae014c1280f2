//! Prometheus metrics of one engine (DESIGN.md: /metrics).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Records decoded into a table, per source table.
    pub ingested: IntCounterVec,
    /// Dead letters recorded, per source (table or view).
    pub dead_letters: IntCounterVec,
    /// Events appended over HTTP, per topic.
    pub appended: IntCounterVec,
    /// Rows in a view at its last full read.
    pub view_rows: IntGaugeVec,
    /// Milliseconds between now and the time a view is complete through.
    pub freshness_lag_ms: IntGaugeVec,
    /// Partial matches in progress in a view's pattern rules.
    pub partial_matches: IntGaugeVec,
    pub peeks: IntCounterVec,
    pub peek_seconds: HistogramVec,
    /// Live subscribers to a view's changes.
    pub subscribers: IntGaugeVec,
    /// Subscribers ended because they fell behind.
    pub slow_subscribers: IntCounterVec,
    /// Per Kafka source table: 1 while the broker answers.
    pub kafka_connected: IntGaugeVec,
    /// Per Kafka source partition: records on the broker not yet ingested.
    pub kafka_lag: IntGaugeVec,
    /// Per Kafka source table: attempts made again after an error.
    pub kafka_retries: IntGaugeVec,
    /// Per Kafka source table: records copied into the embedded log.
    pub kafka_ingested: IntGaugeVec,
    /// Per sink: records written, errors met (each retried), times waiting
    /// to be written, and the last time written.
    pub sink_records: IntGaugeVec,
    pub sink_errors: IntGaugeVec,
    pub sink_queued: IntGaugeVec,
    pub sink_written_as_of: IntGaugeVec,
    /// Per action sink and outcome: delivered, fallback_delivered, failed.
    pub action_outcomes: IntGaugeVec,
    /// Per action sink: retries, in_flight, pending, circuit_state (0
    /// closed, 1 open, 2 half-open), circuit_opened.
    pub action_retries: IntGaugeVec,
    pub action_in_flight: IntGaugeVec,
    pub action_pending: IntGaugeVec,
    pub action_circuit_state: IntGaugeVec,
    pub action_circuit_opened: IntGaugeVec,
    /// Per job: its last snapshot's time, bytes and entries, how long it
    /// took to write, and how many were written.
    pub snapshot_at: IntGaugeVec,
    pub snapshot_bytes: IntGaugeVec,
    pub snapshot_entries: IntGaugeVec,
    pub snapshot_write_seconds: GaugeVec,
    pub snapshots_written: IntCounterVec,
    /// Per job: seconds since its last snapshot's time (set at each scrape).
    pub snapshot_age_seconds: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let ingested = IntCounterVec::new(
            Opts::new("weir_source_records_ingested_total", "records decoded into a table"),
            &["source"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new("weir_dead_letters_total", "records and rows sent to the dead letters"),
            &["source"],
        )?;
        let appended = IntCounterVec::new(
            Opts::new("weir_log_appended_total", "events appended to the embedded log"),
            &["topic"],
        )?;
        let view_rows = IntGaugeVec::new(
            Opts::new(
                "weir_view_rows",
                "rows in the view, as far as the workers have computed it",
            ),
            &["view"],
        )?;
        let freshness_lag_ms = IntGaugeVec::new(
            Opts::new(
                "weir_view_freshness_lag_ms",
                "now minus the time the view is complete through",
            ),
            &["view"],
        )?;
        let partial_matches = IntGaugeVec::new(
            Opts::new(
                "weir_pattern_partial_matches",
                "partitions of a view's pattern rules with a match in progress",
            ),
            &["view"],
        )?;
        let peeks = IntCounterVec::new(
            Opts::new(
                "weir_peeks_total",
                "reads of views, by path (index, scan, query) and via (copy, workers)",
            ),
            &["view", "path", "via", "outcome"],
        )?;
        let peek_seconds = HistogramVec::new(
            HistogramOpts::new("weir_peek_seconds", "latency of reads of views").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["view", "path", "via"],
        )?;
        let kafka_connected = IntGaugeVec::new(
            Opts::new(
                "weir_kafka_source_connected",
                "1 while the Kafka source's broker answers",
            ),
            &["table", "topic"],
        )?;
        let kafka_lag = IntGaugeVec::new(
            Opts::new(
                "weir_kafka_consumer_lag",
                "records of a Kafka partition not yet ingested (high watermark minus next offset)",
            ),
            &["table", "topic", "partition"],
        )?;
        let kafka_retries = IntGaugeVec::new(
            Opts::new(
                "weir_kafka_source_retries",
                "attempts a Kafka source made again after an error",
            ),
            &["table", "topic"],
        )?;
        let kafka_ingested = IntGaugeVec::new(
            Opts::new(
                "weir_kafka_source_records",
                "records a Kafka source copied into the embedded log since the engine started",
            ),
            &["table", "topic"],
        )?;
        let sink = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["sink", "topic"]);
        let sink_records = sink("weir_sink_records", "records a sink wrote since the engine started")?;
        let sink_errors = sink(
            "weir_sink_errors",
            "errors a sink met since the engine started (each is retried with backoff)",
        )?;
        let sink_queued = sink(
            "weir_sink_queued_times",
            "engine times whose changes wait to be written",
        )?;
        let sink_written_as_of = sink("weir_sink_written_as_of", "the last engine time a sink wrote")?;
        for g in [&sink_records, &sink_errors, &sink_queued, &sink_written_as_of] {
            registry.register(Box::new(g.clone()))?;
        }
        let action_outcomes = IntGaugeVec::new(
            Opts::new(
                "weir_action_outcomes",
                "requests of an action sink by final outcome (delivered, fallback_delivered, failed) since the engine started",
            ),
            &["sink", "outcome"],
        )?;
        let action = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["sink"]);
        let action_retries = action(
            "weir_action_retries",
            "attempts of an action sink after a request's first",
        )?;
        let action_in_flight = action("weir_action_in_flight", "an action sink's requests on the wire")?;
        let action_pending = action(
            "weir_action_pending",
            "an action sink's requests taken in whose outcome is not yet recorded",
        )?;
        let action_circuit_state = action(
            "weir_action_circuit_state",
            "an action sink's circuit breaker: 0 closed, 1 open, 2 half-open",
        )?;
        let action_circuit_opened = action(
            "weir_action_circuit_opened",
            "how often an action sink's circuit opened",
        )?;
        for g in [
            &action_outcomes,
            &action_retries,
            &action_in_flight,
            &action_pending,
            &action_circuit_state,
            &action_circuit_opened,
        ] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(kafka_connected.clone()))?;
        registry.register(Box::new(kafka_lag.clone()))?;
        registry.register(Box::new(kafka_retries.clone()))?;
        registry.register(Box::new(kafka_ingested.clone()))?;
        registry.register(Box::new(ingested.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(appended.clone()))?;
        registry.register(Box::new(view_rows.clone()))?;
        registry.register(Box::new(freshness_lag_ms.clone()))?;
        registry.register(Box::new(partial_matches.clone()))?;
        registry.register(Box::new(peeks.clone()))?;
        registry.register(Box::new(peek_seconds.clone()))?;
        let subscribers = IntGaugeVec::new(
            Opts::new("weir_subscribers", "live subscribers to the view's changes"),
            &["view"],
        )?;
        let slow_subscribers = IntCounterVec::new(
            Opts::new(
                "weir_slow_subscribers_dropped_total",
                "subscribers to the view's changes ended because they fell behind",
            ),
            &["view"],
        )?;
        registry.register(Box::new(subscribers.clone()))?;
        registry.register(Box::new(slow_subscribers.clone()))?;
        let job = &["job"];
        let snapshot_at = IntGaugeVec::new(
            Opts::new("weir_snapshot_last_at_ms", "time (ms) the job's last snapshot is of"),
            job,
        )?;
        let snapshot_bytes = IntGaugeVec::new(
            Opts::new("weir_snapshot_bytes", "bytes of the job's last snapshot"),
            job,
        )?;
        let snapshot_entries = IntGaugeVec::new(
            Opts::new("weir_snapshot_entries", "entries of the job's last snapshot"),
            job,
        )?;
        let snapshot_write_seconds = GaugeVec::new(
            Opts::new(
                "weir_snapshot_write_seconds",
                "seconds the job's last snapshot took to write",
            ),
            job,
        )?;
        let snapshots_written = IntCounterVec::new(
            Opts::new("weir_snapshots_written_total", "snapshots written for the job"),
            job,
        )?;
        let snapshot_age_seconds = IntGaugeVec::new(
            Opts::new(
                "weir_snapshot_age_seconds",
                "seconds since the time of the job's last snapshot",
            ),
            job,
        )?;
        registry.register(Box::new(snapshot_at.clone()))?;
        registry.register(Box::new(snapshot_bytes.clone()))?;
        registry.register(Box::new(snapshot_entries.clone()))?;
        registry.register(Box::new(snapshot_write_seconds.clone()))?;
        registry.register(Box::new(snapshots_written.clone()))?;
        registry.register(Box::new(snapshot_age_seconds.clone()))?;
        Ok(Metrics {
            registry,
            ingested,
            dead_letters,
            appended,
            view_rows,
            freshness_lag_ms,
            partial_matches,
            peeks,
            peek_seconds,
            subscribers,
            slow_subscribers,
            kafka_connected,
            kafka_lag,
            kafka_retries,
            kafka_ingested,
            sink_records,
            sink_errors,
            sink_queued,
            sink_written_as_of,
            action_outcomes,
            action_retries,
            action_in_flight,
            action_pending,
            action_circuit_state,
            action_circuit_opened,
            snapshot_at,
            snapshot_bytes,
            snapshot_entries,
            snapshot_write_seconds,
            snapshots_written,
            snapshot_age_seconds,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
