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
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let child = weir()
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop"),
            "--generate-rate",
            "0",
        ])
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
