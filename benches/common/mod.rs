//! What the benchmarks that run the shop on the real binary share: the
//! binary, an HTTP client, a running engine and what `/proc` says of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A comma-separated list from the environment variable `name`, or from
/// `default` when it is unset.
pub fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub fn status(url: &str) -> u16 {
    agent().get(url).call().map(|r| r.status().as_u16()).unwrap_or(0)
}

pub fn get_json(url: &str) -> Option<Value> {
    agent().get(url).call().ok()?.body_mut().read_json().ok()
}

/// A `/proc/PID/status` figure in KiB (`VmHWM`: peak RSS, `VmRSS`: now).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `weir generate`: `events` shop events over `order_ids` order ids,
/// written straight into the log of `dir` (removed first).
pub fn generate(dir: &Path, events: u64, order_ids: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let ok = weir()
        .args([
            "generate",
            "--events",
            &events.to_string(),
            "--order-ids",
            &order_ids.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("weir generate runs");
    assert!(ok.success(), "weir generate failed");
}

/// A running engine, killed (`kill -9`) when dropped.
pub struct Engine {
    pub child: Child,
    pub url: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weir run examples/shop` on `dir` with `workers` workers, no synthetic
/// feed, and `extra` flags.
pub fn start_shop(dir: &Path, workers: usize, extra: &[&str]) -> Engine {
    start_job(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop")),
        dir,
        workers,
        extra,
    )
}

/// `weir run JOB_DIR` on `dir` (see [`start_shop`]).
pub fn start_job(job_dir: &Path, dir: &Path, workers: usize, extra: &[&str]) -> Engine {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let child = weir()
        .arg("run")
        .arg(job_dir)
        .args(["--generate-rate", "0"])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            &workers.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    Engine {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Waits until the engine's `/readyz` answers 200 (every job caught up),
/// looking every 20 ms; at most an hour.
pub fn wait_ready(e: &Engine) {
    let began = std::time::Instant::now();
    while status(&format!("{}/readyz", e.url)) != 200 {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(3600),
            "not ready within an hour"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// User plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime
            // are the 12th and 13th of them.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks_per_second)
        })
        .unwrap_or(0.0)
}

/// The wall clock, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current time as an event's `ts`: an old one would be late for the
/// shop's pattern rules and make the event a dead letter.
pub fn now_ts() -> String {
    weir_operators::repr::format_timestamp(now_ms() as i64)
}

/// A client ingesting new `OrderPlaced` events at a steady rate (batches of
/// 100, paced by the clock) until stopped.
pub struct Ingester {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ingester {
    pub fn start(url: &str, events_per_second: u64) -> Ingester {
        let url = url.to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let every = std::time::Duration::from_secs_f64(100.0 / events_per_second.max(1) as f64);
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            let began = std::time::Instant::now();
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let due = began + every * i as u32;
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                let ts = now_ts();
                let body: String = (0..100)
                    .map(|j| serde_json::json!({"type": "OrderPlaced", "order_id": 50_000_000 + i * 100 + j, "customer_id": j, "product": "sku-mug", "quantity": 1, "price": "7.50", "ts": ts}).to_string() + "\n")
                    .collect();
                let _ = agent().post(format!("{url}/v1/topics/orders/events")).send(body);
                i += 1;
            }
        });
        Ingester { stop, thread }
    }

    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
