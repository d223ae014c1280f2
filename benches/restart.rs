//! The restart benchmark (issue 11): prints one JSON object per measurement.
//!
//! For each event count N (env `WEIR_BENCH_RESTART_EVENTS`, default
//! `1000000,10000000,30000000`), N shop events over the same 50,000 order
//! ids are written into a data directory, and the shop runs on 2 workers
//! (env `WEIR_BENCH_WORKERS`) until caught up. Then:
//! - `snapshot`: a snapshot of every job is forced; its bytes, the slowest
//!   job's write seconds, and the engine's peak RSS while it is written
//!   over its steady RSS before (`VmRSS` sampled every 5 ms).
//! - `restart`: the engine is killed (`kill -9`) and started again on the
//!   same files; `restart_s` is process start → `/readyz` answers and every
//!   view is complete at the time it was complete at before the kill. Once
//!   from the snapshots, once from a copy of the directory with `--replay`
//!   (the whole log replayed).
//! - `restart_ratio`: restart at the most events over at the fewest, with
//!   and without snapshots (the issue asks ≤ 1.3 with them).
//! - `ingest`: HTTP ingest of NDJSON batches of 1000 events (1.5M, env
//!   `WEIR_BENCH_INGEST_EVENTS`) into a running shop, with a snapshot every
//!   second and with none; events/s and their ratio.
//!
//! Run: `cargo bench --bench restart` (release build of the real binary).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent, env_list, generate, get_json as get, now_ts, proc_kib, start_shop as start, wait_ready, Engine};
use serde_json::{json, Value};

fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "VmRSS")
}

/// Each view's `complete_through`.
fn completes(e: &Engine) -> Vec<(String, u64)> {
    get(&format!("{}/v1/views", e.url))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["complete_through"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until every view is complete at least through its time in `pre`.
fn wait_complete(e: &Engine, pre: &[(String, u64)]) {
    let began = Instant::now();
    loop {
        let now = completes(e);
        let done = pre.iter().all(|(v, t)| now.iter().any(|(n, c)| n == v && c >= t));
        if done {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(3600),
            "views not complete within an hour"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The jobs' last snapshot numbers, for jobs that have views.
fn last_snapshots(e: &Engine) -> Vec<(String, Value)> {
    get(&format!("{}/v1/jobs", e.url))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|j| j["views"].as_array().is_some_and(|v| !v.is_empty()))
        .map(|j| {
            (
                j["name"].as_str().unwrap_or_default().to_string(),
                j["snapshots"]["last"].clone(),
            )
        })
        .collect()
}

/// Forces a snapshot of every job and waits for all; returns (bytes, the
/// slowest write's seconds, peak RSS KiB while writing).
fn snapshot(e: &Engine) -> (u64, f64, u64) {
    let before: Vec<u64> = last_snapshots(e)
        .iter()
        .map(|(_, m)| m["number"].as_u64().unwrap_or(0))
        .collect();
    let _ = agent().post(format!("{}/v1/snapshots", e.url)).send_empty();
    let began = Instant::now();
    let mut peak = 0;
    loop {
        peak = peak.max(rss_kib(e.child.id()));
        let now = last_snapshots(e);
        let done = now.len() == before.len()
            && now
                .iter()
                .zip(&before)
                .all(|((_, m), b)| m["number"].as_u64().unwrap_or(0) > *b);
        if done {
            let bytes = now.iter().map(|(_, m)| m["bytes"].as_u64().unwrap_or(0)).sum();
            let write_s = now
                .iter()
                .map(|(_, m)| m["write_ms"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0) as f64
                / 1000.0;
            return (bytes, write_s, peak);
        }
        assert!(
            began.elapsed() < Duration::from_secs(600),
            "snapshots not written: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp").arg("-r").arg(from).arg(to).status().expect("cp");
    assert!(ok.success());
}

/// Steady RSS: the mean of samples over `d`.
fn steady_rss(pid: u32, d: Duration) -> u64 {
    let began = Instant::now();
    let mut samples = Vec::new();
    while began.elapsed() < d {
        samples.push(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(5));
    }
    samples.iter().sum::<u64>() / samples.len().max(1) as u64
}

fn ingest_rate(e: &Engine, events: u64) -> f64 {
    let began = Instant::now();
    let batch = 1000;
    for b in 0..events / batch {
        let ts = now_ts();
        let body: String = (0..batch)
            .map(|j| {
                let id = 60_000_000 + b * batch + j;
                json!({"type": "OrderPlaced", "order_id": id % 50_000, "customer_id": j % 500, "product": "sku-mug",
                       "quantity": 1, "price": "7.50", "ts": &ts})
                .to_string()
                    + "\n"
            })
            .collect();
        let r = agent().post(format!("{}/v1/topics/orders/events", e.url)).send(body);
        assert!(r.is_ok_and(|r| r.status() == 200), "ingest failed");
    }
    events as f64 / began.elapsed().as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts: Vec<u64> = env_list("WEIR_BENCH_RESTART_EVENTS", "1000000,10000000,30000000");
    let workers: usize = env_list("WEIR_BENCH_WORKERS", "2").first().copied().unwrap_or(2);
    let mut restarts: Vec<(u64, f64, f64)> = Vec::new();
    for &n in &counts {
        let dir: PathBuf = std::env::temp_dir().join(format!("weir-restart-{n}-{}", std::process::id()));
        let replay_dir = dir.with_extension("replay");
        generate(&dir, n, 50_000);
        let began = Instant::now();
        let e = start(&dir, workers, &["--snapshot-interval", "0"]);
        wait_ready(&e);
        let catch_up_s = began.elapsed().as_secs_f64();
        let steady = steady_rss(e.child.id(), Duration::from_secs(1));
        let (bytes, write_s, peak) = snapshot(&e);
        println!(
            "{}",
            json!({"bench": "snapshot", "events": n, "workers": workers, "catch_up_s": catch_up_s,
                   "snapshot_bytes": bytes, "write_s": write_s, "steady_rss_mib": steady / 1024,
                   "peak_rss_during_snapshot_mib": peak / 1024,
                   "rss_ratio": peak as f64 / steady.max(1) as f64})
        );
        let pre = completes(&e);
        drop(e); // kill -9
        copy(&dir, &replay_dir);

        let began = Instant::now();
        let e = start(&dir, workers, &["--snapshot-interval", "0"]);
        wait_ready(&e);
        wait_complete(&e, &pre);
        let with_snapshots = began.elapsed().as_secs_f64();
        drop(e);

        let began = Instant::now();
        let e = start(&replay_dir, workers, &["--snapshot-interval", "0", "--replay"]);
        wait_ready(&e);
        wait_complete(&e, &pre);
        let replay = began.elapsed().as_secs_f64();
        drop(e);
        println!(
            "{}",
            json!({"bench": "restart", "events": n, "workers": workers,
                   "restart_s": with_snapshots, "restart_replay_s": replay})
        );
        restarts.push((n, with_snapshots, replay));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&replay_dir);
    }
    if let (Some(first), Some(last)) = (restarts.first(), restarts.last()) {
        if restarts.len() > 1 {
            println!(
                "{}",
                json!({"bench": "restart_ratio", "events": [first.0, last.0],
                       "with_snapshots": last.1 / first.1, "replay": last.2 / first.2})
            );
        }
    }

    // Ingest with snapshots every second against none, on the same log
    // (env `WEIR_BENCH_INGEST_EVENTS`, default 1,500,000: several seconds,
    // several snapshots).
    let ingest_events: u64 = env_list("WEIR_BENCH_INGEST_EVENTS", "1500000")
        .first()
        .copied()
        .unwrap_or(1_500_000);
    let base: PathBuf = std::env::temp_dir().join(format!("weir-restart-ingest-{}", std::process::id()));
    generate(&base, 200_000, 50_000);
    let mut rates = Vec::new();
    for interval in ["1", "0"] {
        let d = base.with_extension(format!("i{interval}"));
        copy(&base, &d);
        let e = start(&d, workers, &["--snapshot-interval", interval]);
        wait_ready(&e);
        let rate = ingest_rate(&e, ingest_events);
        let snapshots: u64 = last_snapshots(&e)
            .iter()
            .map(|(_, m)| m["number"].as_u64().unwrap_or(0))
            .sum();
        rates.push(rate);
        println!(
            "{}",
            json!({"bench": "ingest", "snapshot_interval_s": interval, "workers": workers,
                   "events_per_second": rate, "snapshots_written": snapshots})
        );
        drop(e);
        let _ = std::fs::remove_dir_all(&d);
    }
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "{}",
        json!({"bench": "ingest_ratio", "with_over_without": rates[0] / rates[1]})
    );
}
