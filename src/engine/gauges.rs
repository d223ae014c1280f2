//! Gauges set at each metrics scrape from what the workers and connectors
//! publish; dropped views and connectors disappear from them.

use std::sync::atomic::Ordering;

use weir_dataflows::catalog::ObjectKind;

use super::Engine;
use crate::shared::{lock, now_ms};

impl Engine {
    /// Sets the per-view gauges (rows, freshness lag) from the workers'
    /// progress, and the connectors' gauges from their status.
    pub fn refresh_view_gauges(&self) {
        let cat = lock(&self.catalog);
        let m = &self.shared.metrics;
        m.view_rows.reset();
        m.freshness_lag_ms.reset();
        m.partial_matches.reset();
        m.snapshot_age_seconds.reset();
        for name in cat.jobs.keys() {
            if let Some(last) = self.shared.snapshots.last(name) {
                let age = now_ms().saturating_sub(last.at) / 1000;
                m.snapshot_age_seconds
                    .with_label_values(&[name.as_str()])
                    .set(age as i64);
            }
        }
        for g in [
            &m.kafka_connected,
            &m.kafka_lag,
            &m.kafka_retries,
            &m.kafka_ingested,
            &m.sink_records,
            &m.sink_errors,
            &m.sink_queued,
            &m.sink_written_as_of,
            &m.action_outcomes,
            &m.action_retries,
            &m.action_in_flight,
            &m.action_pending,
            &m.action_circuit_state,
            &m.action_circuit_opened,
        ] {
            g.reset();
        }
        for i in self.shared.connectors.ingests().values() {
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
        for w in self.shared.connectors.sinks().values() {
            let labels = [w.name.as_str(), w.destination.as_str()];
            let st = &w.status;
            for (g, v) in [
                (&m.sink_records, &st.records),
                (&m.sink_errors, &st.errors),
                (&m.sink_queued, &st.queued),
                (&m.sink_written_as_of, &st.written_as_of),
            ] {
                g.with_label_values(&labels).set(v.load(Ordering::SeqCst) as i64);
            }
            if let Some(a) = &w.action {
                let sink = [w.name.as_str()];
                for (outcome, v) in [
                    ("delivered", &a.delivered),
                    ("fallback_delivered", &a.fallback_delivered),
                    ("failed", &a.failed),
                ] {
                    m.action_outcomes
                        .with_label_values(&[w.name.as_str(), outcome])
                        .set(v.load(Ordering::Relaxed) as i64);
                }
                for (g, v) in [
                    (&m.action_retries, &a.retries),
                    (&m.action_in_flight, &a.in_flight),
                    (&m.action_pending, &a.pending),
                    (&m.action_circuit_state, &a.breaker),
                    (&m.action_circuit_opened, &a.breaker_opened),
                ] {
                    g.with_label_values(&sink).set(v.load(Ordering::Relaxed) as i64);
                }
            }
        }
        let now = now_ms();
        let frontiers = &self.shared.frontiers;
        for (name, o) in cat
            .objects
            .iter()
            .filter(|(_, o)| matches!(o.kind, ObjectKind::View(_)))
        {
            if let Some(rows) = frontiers.view_rows(o.df, name) {
                m.view_rows.with_label_values(&[name.as_str()]).set(rows);
            }
            if let Some(live) = frontiers.view_partial_matches(o.df, name) {
                m.partial_matches.with_label_values(&[name.as_str()]).set(live);
            }
            if let Some(t) = frontiers.complete_through(o.df, name) {
                m.freshness_lag_ms
                    .with_label_values(&[name.as_str()])
                    .set(now.saturating_sub(t) as i64);
            }
        }
    }
}
