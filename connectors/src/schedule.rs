//! Schedules: a tick event appended to a log topic at the start of each
//! interval, exactly once per interval, across restarts.
//!
//! The interval's number (`tick` = ms since the Unix epoch / interval) is
//! recorded with each append in one atomic, durable write. A restarted
//! engine appends every interval it missed, in order, before the current
//! one: none is skipped, none doubled. The first start begins with the
//! interval it is in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocksdb::WriteBatch;
use serde_json::json;

use crate::clock::wall_clock;
use crate::keys::read_u64;
use crate::log::EventLog;
use crate::meta::Meta;
use crate::sync::lock;

/// Ticks appended in one write at most (a long outage's catch-up).
const CATCH_UP_BATCH: u64 = 10_000;

#[derive(Debug, Default)]
pub struct ScheduleStatus {
    /// The last interval appended (0: none yet).
    pub last_tick: AtomicU64,
    pub appended: AtomicU64,
    pub errors: AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

/// A running schedule; stops when dropped.
pub struct Schedule {
    pub topic: String,
    pub interval_ms: u64,
    pub status: Arc<ScheduleStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts appending ticks every `interval_ms` to `topic`; `wake` is called
/// after each append (so the dataflows read it at once).
pub fn start_schedule(
    topic: String,
    interval_ms: u64,
    log: EventLog,
    meta: Meta,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<Schedule> {
    let status = Arc::new(ScheduleStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runner = Runner {
        key: format!("schedule/{topic}/last"),
        topic: topic.clone(),
        interval_ms: interval_ms.max(1),
        log,
        meta,
        wake,
        status: Arc::clone(&status),
        stop: Arc::clone(&stop),
    };
    let thread = std::thread::Builder::new()
        .name(format!("schedule-{topic}"))
        .spawn(move || runner.run())?;
    Ok(Schedule {
        topic,
        interval_ms,
        status,
        stop,
        thread: Some(thread),
    })
}

struct Runner {
    key: String,
    topic: String,
    interval_ms: u64,
    log: EventLog,
    meta: Meta,
    wake: Arc<dyn Fn() + Send + Sync>,
    status: Arc<ScheduleStatus>,
    stop: Arc<AtomicBool>,
}

impl Runner {
    fn now_tick(&self) -> u64 {
        wall_clock() / self.interval_ms
    }

    fn failed(&self, e: impl std::fmt::Display) {
        self.status.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.status.last_error) = Some(e.to_string());
    }

    fn run(self) {
        let mut last: Option<u64> = loop {
            match self.meta.get(&self.key) {
                Ok(v) => break v.and_then(|b| read_u64(&b)),
                Err(e) => self.failed(e),
            }
            if self.sleep(Duration::from_secs(1)) {
                return;
            }
        };
        if let Some(t) = last {
            self.status.last_tick.store(t, Ordering::Relaxed);
        }
        loop {
            let now = self.now_tick();
            let first = last.map_or(now, |l| l + 1);
            if first <= now {
                let through = now.min(first + CATCH_UP_BATCH - 1);
                let events: Vec<Vec<u8>> = (first..=through).map(|n| self.event(n)).collect();
                let key = &self.key;
                let meta = &self.meta;
                let appended = self.log.append_with(&self.topic, &events, &mut |b: &mut WriteBatch| {
                    meta.put_in(b, key, &through.to_be_bytes());
                });
                match appended {
                    Ok(_) => {
                        last = Some(through);
                        self.status.last_tick.store(through, Ordering::Relaxed);
                        self.status.appended.fetch_add(events.len() as u64, Ordering::Relaxed);
                        (self.wake)();
                        continue;
                    }
                    Err(e) => {
                        self.failed(e);
                        if self.sleep(Duration::from_secs(1)) {
                            return;
                        }
                        continue;
                    }
                }
            }
            // Until the next interval begins.
            let next_ms = (now + 1).saturating_mul(self.interval_ms);
            let wait = next_ms.saturating_sub(wall_clock());
            if self.sleep(Duration::from_millis(wait.max(1))) {
                return;
            }
        }
    }

    fn event(&self, n: u64) -> Vec<u8> {
        let at = n.saturating_mul(self.interval_ms);
        json!({"tick": n, "at": at, "ts": at, "interval_ms": self.interval_ms})
            .to_string()
            .into_bytes()
    }

    /// Sleeps `d`; true if the schedule stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep((until - std::time::Instant::now()).min(Duration::from_millis(50)));
        }
        self.stop.load(Ordering::SeqCst)
    }
}
