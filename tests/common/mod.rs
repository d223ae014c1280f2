//! Helpers shared by the end-to-end tests: the real `weir` binary, driven
//! over HTTP.
#![allow(dead_code)]

pub mod kafka;
pub mod service;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A test's data directory, removed when the test passes (kept when it
/// panics, for a look at the RocksDB files). Declare it before the engines
/// that use it so that they stop first.
pub struct DataDir(PathBuf);

impl std::ops::Deref for DataDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for DataDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for DataDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn data_dir(name: &str) -> DataDir {
    let d = std::env::temp_dir().join(format!("weir-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    DataDir(d)
}

pub fn start(dir: &PathBuf, extra: &[&str]) -> Engine {
    start_with(dir, &["serve"], extra)
}

/// Starts `weir <command…> --data-dir dir --listen … --workers 2 <extra…>`
/// (`extra` may give its own `--workers`).
pub fn start_with(dir: &PathBuf, command: &[&str], extra: &[&str]) -> Engine {
    start_env(dir, command, extra, &[])
}

/// [`start_with`], with these environment variables set for the engine.
pub fn start_env(dir: &PathBuf, command: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Engine {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(command)
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(if extra.contains(&"--workers") {
            &[][..]
        } else {
            &["--workers", "2"][..]
        })
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let e = Engine { child, url };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if agent()
            .get(format!("{}/healthz", e.url))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return e;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("weir did not come up");
}

/// Waits until `/readyz` answers 200: the jobs have caught up with the log.
pub fn wait_ready(e: &Engine, within: Duration) {
    let deadline = Instant::now() + within;
    while get(e, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready: {}", get(e, "/v1/jobs").1);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kill -9`, then a new engine on the same files, once it is ready.
pub fn kill_and_restart(mut e: Engine, dir: &PathBuf) -> Engine {
    e.child.kill().expect("kill -9");
    let _ = e.child.wait();
    drop(e);
    let e = start(dir, &[]);
    wait_ready(&e, Duration::from_secs(60));
    e
}

/// Ctrl-C (`SIGINT`), then the engine's exit status once it has stopped
/// (panics if it takes longer than `within`).
pub fn interrupt(e: &mut Engine, within: Duration) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-INT", &e.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = e.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "weir did not stop on SIGINT within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub fn parse(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut resp = resp.expect("HTTP works");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn get(e: &Engine, path: &str) -> (u16, Value) {
    parse(agent().get(format!("{}{path}", e.url)).call())
}

pub fn post(e: &Engine, path: &str, body: &str) -> (u16, Value) {
    parse(
        agent()
            .post(format!("{}{path}", e.url))
            .content_type("application/json")
            .send(body),
    )
}

pub fn put(e: &Engine, path: &str, body: Value) -> (u16, Value) {
    parse(agent().put(format!("{}{path}", e.url)).send_json(body))
}

pub fn poll_rows(e: &Engine, path: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (s, v) = get(e, path);
        assert_eq!(s, 200, "{v}");
        let rows = rows_of(&v);
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The engine's `/metrics` text.
pub fn metrics_text(e: &Engine) -> String {
    agent()
        .get(format!("{}/metrics", e.url))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .unwrap_or_default()
}

pub fn rows_of(v: &Value) -> Vec<Value> {
    v["rows"].as_array().cloned().unwrap_or_default()
}
