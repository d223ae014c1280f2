//! A real HTTP service for the action sinks' tests: it answers each request
//! as the test's rule says (a status, after a delay, with `Retry-After`),
//! records every request it got, and de-duplicates by `Idempotency-Key` as
//! a careful service would. Shares no code with weir's HTTP client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the service saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub key: String,
    pub attempt: u32,
    pub op: String,
    pub body: Value,
    /// The status the rule chose.
    pub status: u16,
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            body: serde_json::json!({"status": status}),
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Reply {
        self.retry_after = Some(secs);
        self
    }
}

/// Decides the answer from the request and what the service saw of the
/// same idempotency key before.
pub type Rule = Box<dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync>;

struct Inner {
    rule: Mutex<Rule>,
    seen: Mutex<Vec<Seen>>,
    /// Idempotency key → the first 2xx's body: the effect, done once.
    effected: Mutex<BTreeMap<String, Value>>,
}

pub struct Service {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Starts on a free port.
    pub fn start(rule: Rule) -> Service {
        Service::start_on(0, rule)
    }

    /// Starts on `port` (0: any free one).
    pub fn start_on(port: u16, rule: Rule) -> Service {
        let inner = Arc::new(Inner {
            rule: Mutex::new(rule),
            seen: Mutex::new(Vec::new()),
            effected: Mutex::new(BTreeMap::new()),
        });
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the service binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&inner);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = axum::Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Service {
            addr,
            inner,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_rule(&self, rule: Rule) {
        *self.inner.rule.lock().expect("rule") = rule;
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().expect("seen").clone()
    }

    /// Idempotency key → body of the request that took effect.
    pub fn effected(&self) -> BTreeMap<String, Value> {
        self.inner.effected.lock().expect("effected").clone()
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut seen = Seen {
        at: Instant::now(),
        path: uri.path().to_string(),
        key: header("idempotency-key"),
        attempt: header("weir-attempt").parse().unwrap_or(0),
        op: header("weir-op"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: 0,
    };
    let reply = {
        let before: Vec<Seen> = inner
            .seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|s| s.key == seen.key)
            .cloned()
            .collect();
        (inner.rule.lock().expect("rule"))(&seen, &before)
    };
    seen.status = reply.status;
    inner.seen.lock().expect("seen").push(seen.clone());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if (200..300).contains(&reply.status) {
        inner
            .effected
            .lock()
            .expect("effected")
            .entry(seen.key.clone())
            .or_insert_with(|| seen.body.clone());
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(reply.body)).into_response();
    if let Some(secs) = reply.retry_after {
        if let Ok(v) = secs.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}
