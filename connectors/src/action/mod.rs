//! Action sinks (`CREATE SINK … WITH (connector = 'http')`): each new row
//! of a view becomes one HTTP request to a service, with an idempotency
//! key, retries with backoff, a timeout, a circuit breaker and a fallback;
//! each final outcome can be appended to a topic of the embedded log.
//!
//! Three threads per sink:
//! - the **feed** takes the view's changes in (as every sink does:
//!   [`crate::sink::feed`]), turns each time's into requests
//!   ([`request`]) and writes them to the durable [`outbox`] with the
//!   sink's progress, in one batch;
//! - the **dispatcher** ([`deliver`]) sends them: one key's requests one
//!   after another in outbox order, different keys concurrently up to
//!   `max.in.flight`, each through [`backoff`] and the [`breaker`];
//! - the **recorder** ([`record`]) writes each outcome ([`outcome`]) to
//!   the response and fallback topics and the dead letters, and removes
//!   its request from the outbox, in groups.
//!
//! A restarted engine sends the outbox's requests again (with the same
//! idempotency keys) and replays its views from after the last time the
//! outbox took in. A request answered in the few milliseconds before a
//! crash whose outcome was not yet recorded is sent again too: the
//! idempotency key is what lets the service tell.

pub mod backoff;
pub mod breaker;
mod deliver;
pub mod outbox;
pub mod outcome;
mod record;
pub mod request;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_operators::repr::Schema;

use crate::sink::feed::{Feed, TimeChanges};
use crate::sink::{Retrying, Sink, SinkProgress, SinkStatus};
use crate::store::StateStore;
use outbox::{Entry, Outbox};
use request::{requests, ActionRequest, Op};

/// An action sink's settings (see [`crate::action`] and `docs/actions.md`).
#[derive(Clone, Debug)]
pub struct ActionConfig {
    pub name: String,
    /// The URL template: `{column}` is replaced by the row's value.
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub on_insert: bool,
    pub on_update: bool,
    pub on_delete: bool,
    pub max_in_flight: usize,
    pub timeout: Duration,
    /// Attempts per request in all.
    pub attempts: u32,
    pub backoff: backoff::Backoff,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// The longest a request waits, from being taken in, before it goes to
    /// the fallback.
    pub max_wait: Duration,
    pub fallback_topic: Option<String>,
    pub fallback_url: Option<String>,
    pub response_topic: Option<String>,
    pub schema: Schema,
    pub key: Option<Vec<usize>>,
}

impl ActionConfig {
    pub fn acts_on(&self, op: Op) -> bool {
        match op {
            Op::Insert => self.on_insert,
            Op::Update => self.on_update,
            Op::Delete => self.on_delete,
        }
    }
}

/// What an action sink reports beside its [`SinkStatus`].
#[derive(Debug, Default)]
pub struct ActionStatus {
    /// Requests answered 2xx by the sink's URL.
    pub delivered: AtomicU64,
    /// Requests that failed for good and were taken by the fallback URL.
    pub fallback_delivered: AtomicU64,
    /// Requests nothing took (in the dead letters).
    pub failed: AtomicU64,
    /// Attempts after the first.
    pub retries: AtomicU64,
    pub in_flight: AtomicU64,
    /// Requests in the outbox: taken in, outcome not yet recorded.
    pub pending: AtomicU64,
    /// The circuit: 0 closed, 1 open, 2 half-open.
    pub breaker: AtomicU64,
    pub breaker_opened: AtomicU64,
    /// Sum and count of the latencies from taking the change in to the
    /// final answer, in ms.
    pub latency_ms_sum: AtomicU64,
    pub latency_count: AtomicU64,
    pub last_failure: Mutex<Option<String>>,
}

/// The wall clock, as the outbox's and outcomes' times are kept.
fn now_ms() -> i64 {
    i64::try_from(crate::clock::wall_clock()).unwrap_or(i64::MAX)
}

/// Starts an action sink whose changes `version` sends.
pub fn start_action_sink(config: ActionConfig, store: &StateStore, version: u64) -> std::io::Result<Sink> {
    let status = Arc::new(SinkStatus::default());
    let action = Arc::new(ActionStatus::default());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = SinkProgress::new(store.meta(), &config.name, &config.url);
    let outbox = Arc::new(Outbox::new(store.db(), &config.name, &config.url, progress));
    let (entries, next) = outbox.load().map_err(std::io::Error::other)?;
    let next_seq = Arc::new(AtomicU64::new(next));
    action.pending.store(entries.len() as u64, Ordering::Relaxed);
    let config = Arc::new(config);
    let (tx, rx) = std::sync::mpsc::channel();
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel::<ActionRequest>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();

    let recorder = record::Recorder {
        config: Arc::clone(&config),
        outbox: Arc::clone(&outbox),
        log: store.log(),
        dead_letters: store.dead_letters(),
        action: Arc::clone(&action),
        status: Arc::clone(&status),
        stop: Arc::clone(&stop),
    };
    let dispatch_stop = Arc::clone(&stop);
    let dispatcher = deliver::Dispatcher::new(Arc::clone(&config), Arc::clone(&action), done_tx.clone())
        .map_err(std::io::Error::other)?;
    let mut feed = FeedThread {
        config: Arc::clone(&config),
        outbox: Arc::clone(&outbox),
        status: Arc::clone(&status),
        action: Arc::clone(&action),
        stop: Arc::clone(&stop),
        rx,
        feed: Feed::new(version, Arc::clone(&status)),
        req_tx: req_tx.clone(),
        done_tx,
        next_seq: Arc::clone(&next_seq),
        entries,
    };
    let resend = ActionResend {
        outbox: Arc::clone(&outbox),
        next_seq,
        req_tx,
        action: Arc::clone(&action),
    };
    let name = &config.name;
    let threads = vec![
        std::thread::Builder::new()
            .name(format!("action-{name}"))
            .spawn(move || feed.run())?,
        std::thread::Builder::new()
            .name(format!("action-send-{name}"))
            .spawn(move || dispatcher.run(req_rx, dispatch_stop))?,
        std::thread::Builder::new()
            .name(format!("action-record-{name}"))
            .spawn(move || recorder.run(done_rx))?,
    ];
    Ok(Sink {
        name: config.name.clone(),
        destination: config.url.clone(),
        status,
        action: Some(action),
        resend: Some(Arc::new(resend)),
        tx,
        stop,
        threads,
        forget: Some(Box::new(move || outbox.forget())),
    })
}

struct FeedThread {
    config: Arc<ActionConfig>,
    outbox: Arc<Outbox>,
    status: Arc<SinkStatus>,
    action: Arc<ActionStatus>,
    stop: Arc<AtomicBool>,
    rx: std::sync::mpsc::Receiver<crate::sink::SinkMsg>,
    feed: Feed,
    req_tx: tokio::sync::mpsc::UnboundedSender<ActionRequest>,
    done_tx: std::sync::mpsc::Sender<outcome::Outcome>,
    /// The next outbox number (shared with [`ActionResend`]).
    next_seq: Arc<AtomicU64>,
    /// What the outbox held at the start, to hand on first.
    entries: Vec<Entry>,
}

/// Sends a dead letter's request through its sink again.
pub struct ActionResend {
    outbox: Arc<Outbox>,
    next_seq: Arc<AtomicU64>,
    req_tx: tokio::sync::mpsc::UnboundedSender<ActionRequest>,
    action: Arc<ActionStatus>,
}

impl ActionResend {
    /// Puts `request` (from a dead letter) in the outbox again, with the
    /// idempotency key it had, and hands it to the dispatcher: its outcome
    /// is recorded as any other's. Returns its outbox number.
    pub fn resend(&self, mut request: ActionRequest) -> Result<u64, crate::rocks::StoreError> {
        request.seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        request.accepted_ms = now_ms();
        request.replay += 1;
        self.outbox.add(&request)?;
        self.action.pending.fetch_add(1, Ordering::Relaxed);
        let seq = request.seq;
        // Closed only once the sink stops: then it is sent after a restart.
        let _ = self.req_tx.send(request);
        Ok(seq)
    }
}

/// Times taken into the outbox in one batch at most.
const TIMES_PER_BATCH: usize = 1000;

impl FeedThread {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `f` until it succeeds (or the sink stops), backing off.
    fn retry<T, E: std::fmt::Display>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, E>) -> Option<T> {
        let (status, stop) = (Arc::clone(&self.status), Arc::clone(&self.stop));
        let mut retrying = Retrying::new(&status, &stop);
        while !retrying.stopped() {
            match f(self) {
                Ok(v) => {
                    retrying.succeeded();
                    return Some(v);
                }
                Err(e) => {
                    if !retrying.failed(e) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Hands the outbox's requests on (a restart's), then takes changes in.
    fn run(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        let Some(resume) = self.retry(|f| f.outbox.progress().get("committed")) else {
            return;
        };
        self.feed.resume_after = resume;
        if let Some(t) = resume {
            self.status.written_as_of.store(t, Ordering::SeqCst);
        }
        for e in entries {
            // The other threads end only after this one: sends succeed.
            match e {
                Entry::Pending(r) => drop(self.req_tx.send(r)),
                Entry::Responded(o) => drop(self.done_tx.send(o)),
            }
        }
        let mut batch: Vec<TimeChanges> = Vec::new();
        while !self.stopped() {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => {
                    self.feed.accept(m, &mut batch);
                    while batch.len() < TIMES_PER_BATCH {
                        match self.rx.try_recv() {
                            Ok(m) => self.feed.accept(m, &mut batch),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let frontier = self.status.frontier.load(Ordering::SeqCst);
            self.status.queued.store(batch.len() as u64, Ordering::Relaxed);
            if !batch.is_empty() {
                let times = std::mem::take(&mut batch);
                if self.take_in(&times).is_none() {
                    return;
                }
                self.status.queued.store(0, Ordering::Relaxed);
            }
            self.status.settled.fetch_max(frontier, Ordering::SeqCst);
        }
    }

    /// Writes the requests of `times` to the outbox, then hands them on.
    fn take_in(&mut self, times: &[TimeChanges]) -> Option<()> {
        let last = times.last()?.0;
        let now = now_ms();
        let mut reqs: Vec<ActionRequest> = times
            .iter()
            .flat_map(|(t, changes)| requests(&self.config, *t, changes, now))
            .collect();
        let first = self.next_seq.fetch_add(reqs.len() as u64, Ordering::SeqCst);
        for (r, seq) in reqs.iter_mut().zip(first..) {
            r.seq = seq;
        }
        self.retry(|f| f.outbox.accept(&reqs, last))?;
        self.feed.resume_after = Some(last);
        self.status.written_as_of.store(last, Ordering::SeqCst);
        self.status.records.fetch_add(reqs.len() as u64, Ordering::Relaxed);
        self.action.pending.fetch_add(reqs.len() as u64, Ordering::Relaxed);
        for r in reqs {
            drop(self.req_tx.send(r));
        }
        Some(())
    }
}
