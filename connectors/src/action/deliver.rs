//! The dispatcher: sends the outbox's requests. One key's requests go one
//! after another in outbox order; different keys concurrently, up to
//! `max.in.flight` attempts at once. Each request is tried until it is
//! answered 2xx, fails in a way no retry helps, runs out of attempts, or
//! has waited `fallback.after`; then its `fallback.url` (if any) is tried
//! the same way. Every attempt at the sink's URL passes the circuit
//! breaker.
//!
//! Runs on one thread: a current-thread tokio runtime with a local task
//! set, so the per-key queues and the breaker need no locks.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::{mpsc::UnboundedReceiver, Notify, Semaphore};

use super::backoff::{classify, Attempt};
use super::breaker::{Admit, Breaker};
use super::outcome::{Outcome, Result as Ended, MAX_BODY};
use super::request::ActionRequest;
use super::{now_ms, ActionConfig, ActionStatus};

pub(super) struct Dispatcher {
    config: Arc<ActionConfig>,
    action: Arc<ActionStatus>,
    done: Sender<Outcome>,
    client: reqwest::Client,
}

/// How the attempts at one URL ended.
struct Tried {
    delivered: bool,
    status: Option<u16>,
    body: String,
    attempts: u32,
    reason: Option<String>,
}

struct Shared {
    config: Arc<ActionConfig>,
    action: Arc<ActionStatus>,
    done: Sender<Outcome>,
    client: reqwest::Client,
    permits: Semaphore,
    breaker: RefCell<Breaker>,
    /// Woken when the breaker changes.
    changed: Notify,
    queues: RefCell<HashMap<String, VecDeque<ActionRequest>>>,
}

impl Dispatcher {
    pub fn new(
        config: Arc<ActionConfig>,
        action: Arc<ActionStatus>,
        done: Sender<Outcome>,
    ) -> Result<Dispatcher, reqwest::Error> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.max_in_flight)
            .connect_timeout(config.timeout)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Dispatcher {
            config,
            action,
            done,
            client,
        })
    }

    /// Sends until `stop` is set (the sink stopped); what is in flight
    /// then is dropped, to be sent again from the outbox after a restart.
    pub fn run(self, mut requests: UnboundedReceiver<ActionRequest>, stop: Arc<AtomicBool>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("weir: action sink {} cannot start its runtime: {e}", self.config.name);
                return;
            }
        };
        let shared = Rc::new(Shared {
            breaker: RefCell::new(Breaker::new(self.config.breaker_failures, self.config.breaker_cooldown)),
            permits: Semaphore::new(self.config.max_in_flight.max(1)),
            config: self.config,
            action: self.action,
            done: self.done,
            client: self.client,
            changed: Notify::new(),
            queues: RefCell::new(HashMap::new()),
        });
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            loop {
                let r = match tokio::time::timeout(Duration::from_millis(50), requests.recv()).await {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(_) if stop.load(Ordering::SeqCst) => return,
                    Err(_) => continue,
                };
                let key = r.key.clone();
                let new = {
                    let mut queues = shared.queues.borrow_mut();
                    let q = queues.entry(key.clone()).or_default();
                    q.push_back(r);
                    q.len() == 1
                };
                if new {
                    tokio::task::spawn_local(Rc::clone(&shared).run_key(key));
                }
            }
        });
    }
}

impl Shared {
    /// Delivers `key`'s requests in order until its queue is empty.
    async fn run_key(self: Rc<Self>, key: String) {
        loop {
            let next = self.queues.borrow().get(&key).and_then(|q| q.front().cloned());
            let Some(r) = next else { return };
            let outcome = self.deliver(r).await;
            let _ = self.done.send(outcome);
            let mut queues = self.queues.borrow_mut();
            if let Some(q) = queues.get_mut(&key) {
                q.pop_front();
                if q.is_empty() {
                    queues.remove(&key);
                    return;
                }
            }
        }
    }

    async fn deliver(&self, r: ActionRequest) -> Outcome {
        let waited = u64::try_from(now_ms().saturating_sub(r.accepted_ms)).unwrap_or(0);
        let left = self.config.max_wait.saturating_sub(Duration::from_millis(waited));
        let deadline = Instant::now() + left;
        let first = self.try_url(&r, &r.url, deadline, true).await;
        let (result, last) = if first.delivered {
            (Ended::Delivered, first)
        } else {
            let reason = first.reason.clone();
            match &r.fallback_url {
                Some(url) => {
                    // The fallback gets its own full budget of attempts.
                    let deadline = Instant::now() + self.config.max_wait;
                    let mut second = self.try_url(&r, url, deadline, false).await;
                    second.attempts += first.attempts;
                    let result = if second.delivered {
                        Ended::FallbackDelivered
                    } else {
                        Ended::Failed
                    };
                    second.reason = match (reason, second.reason) {
                        (Some(a), Some(b)) => Some(format!("{a}; the fallback URL: {b}")),
                        (a, b) => a.or(b),
                    };
                    (result, second)
                }
                None => (Ended::Failed, first),
            }
        };
        let finished_ms = now_ms();
        Outcome {
            latency_ms: u64::try_from(finished_ms.saturating_sub(r.accepted_ms)).unwrap_or(0),
            request: r,
            result,
            status: last.status,
            response: last.body,
            attempts: last.attempts,
            reason: last.reason,
            finished_ms,
            on_response_topic: false,
        }
    }

    /// Waits until the breaker lets an attempt go (true: as the probe), or
    /// `deadline` passes (None).
    async fn admit(&self, deadline: Instant) -> Option<bool> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let admit = self.breaker.borrow_mut().admit(Instant::now());
            self.publish_breaker();
            match admit {
                Admit::Go => return Some(false),
                Admit::Probe => return Some(true),
                Admit::WaitUntil(t) => {
                    if t >= deadline {
                        tokio::time::sleep_until(deadline.into()).await;
                        return None;
                    }
                    tokio::time::sleep_until(t.into()).await;
                }
                Admit::WaitProbe => {
                    if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn publish_breaker(&self) {
        let b = self.breaker.borrow();
        self.action.breaker.store(b.state().code(), Ordering::Relaxed);
        self.action.breaker_opened.store(b.opened, Ordering::Relaxed);
    }

    /// Tries `url` until delivered, failed for good, out of attempts, or
    /// past `deadline`.
    async fn try_url(&self, r: &ActionRequest, url: &str, deadline: Instant, breaker: bool) -> Tried {
        let mut tried = Tried {
            delivered: false,
            status: None,
            body: String::new(),
            attempts: 0,
            reason: None,
        };
        loop {
            let probe = if breaker {
                match self.admit(deadline).await {
                    Some(p) => p,
                    None => {
                        tried.reason = Some(format!(
                            "waited {} ms behind an open circuit{}",
                            self.config.max_wait.as_millis(),
                            tried.reason.take().map_or(String::new(), |r| format!(" (last: {r})"))
                        ));
                        return tried;
                    }
                }
            } else {
                false
            };
            let attempt = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return tried;
                };
                tried.attempts += 1;
                if tried.attempts > 1 {
                    self.action.retries.fetch_add(1, Ordering::Relaxed);
                }
                self.action.in_flight.fetch_add(1, Ordering::Relaxed);
                let a = self.send(r, url, &mut tried).await;
                self.action.in_flight.fetch_sub(1, Ordering::Relaxed);
                a
            };
            let now = Instant::now();
            match attempt {
                Attempt::Delivered => {
                    if breaker {
                        self.breaker.borrow_mut().success(probe);
                        self.changed.notify_waiters();
                    }
                    tried.delivered = true;
                    tried.reason = None;
                    return tried;
                }
                Attempt::Permanent { reason } => {
                    if breaker {
                        self.breaker.borrow_mut().success(probe);
                        self.changed.notify_waiters();
                    }
                    tried.reason = Some(reason);
                    return tried;
                }
                Attempt::Transient { reason, retry_after } => {
                    if breaker {
                        self.breaker.borrow_mut().failure(probe, now);
                        self.publish_breaker();
                        self.changed.notify_waiters();
                    }
                    if tried.attempts >= self.config.attempts {
                        tried.reason = Some(format!("{reason}, after {} attempts", tried.attempts));
                        return tried;
                    }
                    let unit: f64 = rand::rng().random();
                    let delay = self.config.backoff.delay(tried.attempts, unit, retry_after);
                    if now + delay >= deadline {
                        tried.reason = Some(format!(
                            "{reason}; the next attempt would be past 'fallback.after' ({} ms)",
                            self.config.max_wait.as_millis()
                        ));
                        return tried;
                    }
                    tried.reason = Some(reason);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt; the answer's status and body go into `tried`.
    async fn send(&self, r: &ActionRequest, url: &str, tried: &mut Tried) -> Attempt {
        let method = match reqwest::Method::from_bytes(self.config.method.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                return Attempt::Permanent {
                    reason: format!("method {}: {e}", self.config.method),
                }
            }
        };
        let mut req = self
            .client
            .request(method.clone(), url)
            .timeout(self.config.timeout)
            .header("Idempotency-Key", &r.idempotency_key)
            .header("Weir-Op", r.op.as_str())
            .header("Weir-As-Of", r.as_of.to_string())
            .header("Weir-Attempt", tried.attempts.to_string());
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        if method != reqwest::Method::GET {
            req = req.header("Content-Type", "application/json").body(r.body.clone());
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                tried.status = None;
                tried.body.clear();
                return if e.is_builder() {
                    Attempt::Permanent {
                        reason: format!("cannot build the request to {url}: {e}"),
                    }
                } else if e.is_timeout() {
                    Attempt::Transient {
                        reason: format!("no answer within {} ms", self.config.timeout.as_millis()),
                        retry_after: None,
                    }
                } else {
                    Attempt::Transient {
                        reason: format!("cannot reach {url}: {}", error_chain(&e)),
                        retry_after: None,
                    }
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match resp.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b[..b.len().min(MAX_BODY)]).into_owned(),
            Err(e) if e.is_timeout() => {
                tried.status = Some(status);
                return Attempt::Transient {
                    reason: format!(
                        "the answer's body did not arrive within {} ms",
                        self.config.timeout.as_millis()
                    ),
                    retry_after: None,
                };
            }
            Err(_) => String::new(),
        };
        tried.status = Some(status);
        tried.body = body;
        classify(status, retry_after.as_deref(), SystemTime::now())
    }
}

/// An error with its sources: reqwest's own message is only the outermost.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
