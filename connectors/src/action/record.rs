//! The recorder: each outcome into the dead letters (if nothing took the
//! request), onto the response topic and the fallback topic, and out of
//! the outbox, in groups, durably.
//!
//! A group is recorded in steps, each one atomic with the outbox's note of
//! it: the dead letters first (recorded once by id, so doing it again is
//! harmless); then the response topic's events, written with the requests
//! marked responded; then the fallback topic's events, written with the
//! requests removed. A crash between steps resumes at the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rocksdb::WriteBatch;

use super::outbox::Outbox;
use super::outcome::{Outcome, Result as Ended};
use super::{ActionConfig, ActionStatus};
use crate::dead_letters::DeadLetters;
use crate::log::EventLog;
use crate::sink::{Retrying, SinkStatus};
use crate::sync::lock;

/// Outcomes recorded in one group at most.
const GROUP: usize = 1024;

pub(super) struct Recorder {
    pub config: Arc<ActionConfig>,
    pub outbox: Arc<Outbox>,
    pub log: EventLog,
    pub dead_letters: DeadLetters,
    pub action: Arc<ActionStatus>,
    pub status: Arc<SinkStatus>,
    pub stop: Arc<AtomicBool>,
}

impl Recorder {
    pub fn run(self, rx: Receiver<Outcome>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => o,
                Err(RecvTimeoutError::Timeout) if self.stop.load(Ordering::SeqCst) => return,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut group = vec![first];
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(o) => group.push(o),
                    Err(_) => break,
                }
            }
            if !self.record(&mut group) {
                // Stopped: what is not recorded stays in the outbox.
                return;
            }
        }
    }

    /// Records `group`; false if the sink stopped first.
    fn record(&self, group: &mut [Outcome]) -> bool {
        let sink = self.config.name.as_str();
        for o in group.iter().filter(|o| o.result == Ended::Failed) {
            if !self.retry(|| self.dead_letters.record(&o.dead_letter(sink)).map(drop)) {
                return false;
            }
        }
        let fresh: Vec<usize> = (0..group.len()).filter(|&i| !group[i].on_response_topic).collect();
        if let (Some(topic), false) = (&self.config.response_topic, fresh.is_empty()) {
            for &i in &fresh {
                group[i].on_response_topic = true;
            }
            let events: Vec<Vec<u8>> = fresh.iter().map(|&i| group[i].event(sink)).collect();
            let marked = || {
                let mut failure = None;
                let r = self.log.append_with(topic, &events, &mut |batch: &mut WriteBatch| {
                    for &i in &fresh {
                        if let Err(e) = self.outbox.responded_in(batch, &group[i]) {
                            failure = Some(e);
                        }
                    }
                });
                match failure {
                    Some(e) => Err(e.to_string()),
                    None => r.map(drop).map_err(|e| e.to_string()),
                }
            };
            if !self.retry(marked) {
                return false;
            }
        }
        let remove = |batch: &mut WriteBatch| {
            for o in group.iter() {
                self.outbox.remove_in(batch, o.request.seq);
            }
        };
        let fallback: Vec<Vec<u8>> = group
            .iter()
            .filter(|o| o.primary_failed())
            .map(|o| o.event(sink))
            .collect();
        let removed = match (&self.config.fallback_topic, fallback.is_empty()) {
            (Some(topic), false) => self.retry(|| {
                self.log
                    .append_with(topic, &fallback, &mut |b: &mut WriteBatch| remove(b))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
            _ => self.retry(|| {
                let mut batch = WriteBatch::default();
                remove(&mut batch);
                self.outbox.write(batch).map_err(|e| e.to_string())
            }),
        };
        if !removed {
            return false;
        }
        for o in group.iter() {
            let counter = match o.result {
                Ended::Delivered => &self.action.delivered,
                Ended::FallbackDelivered => &self.action.fallback_delivered,
                Ended::Failed => &self.action.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.action.latency_ms_sum.fetch_add(o.latency_ms, Ordering::Relaxed);
            self.action.latency_count.fetch_add(1, Ordering::Relaxed);
            if let Some(why) = &o.reason {
                *lock(&self.action.last_failure) = Some(format!("{}: {why}", o.request.idempotency_key));
            }
        }
        let n = group.len() as u64;
        let _ = self
            .action
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(n)));
        true
    }

    /// Runs `f` until it succeeds (false: the sink stopped first), backing
    /// off; failures show in the sink's status.
    fn retry<E: std::fmt::Display>(&self, mut f: impl FnMut() -> Result<(), E>) -> bool {
        let mut retrying = Retrying::new(&self.status, &self.stop);
        loop {
            match f() {
                Ok(()) => return true,
                Err(e) => {
                    if !retrying.failed(format!("cannot record an action's outcome: {e}")) {
                        return false;
                    }
                }
            }
        }
    }
}
