//! The shop benchmark (issue 2): prints one JSON object per measurement.
//!
//! For each event count N (env `WEIR_BENCH_EVENTS`, default `1000000`) and
//! worker count W (env `WEIR_BENCH_WORKERS`, default `1,2`):
//! - `replay`: N shop events already in the log; the engine starts with the
//!   shop jobs and replays them; events/s until `/readyz`, and the engine's
//!   peak RSS (VmHWM) at that point.
//! - `lookups`: point lookups of `order_status` by key while another client
//!   ingests 5,000 events/s; p50/p99 latency and requests/s.
//! - `read_your_writes`: under the same load, post one event and read it
//!   back with the ingest's token; p50/p99 of the round trip, and the
//!   engine's CPU use (cores) meanwhile.
//! - `ingest`: HTTP ingest of NDJSON batches of 1000 events; events/s.
//!
//! - `rss_ratio`: with several event counts, peak RSS after replaying the
//!   most events over that after the fewest. Order ids are drawn from a
//!   fixed set (env `WEIR_BENCH_ORDER_IDS`, default 50000: each id is reused
//!   about four times within the first million events, so both runs are past
//!   warm-up), so more events
//!   mean the same keys: state must stay flat (DESIGN.md §4).
//!
//! Run: `cargo bench --bench shop` (release build of the real binary).
//! `WEIR_BENCH_LOOKUPS` sets the number of point lookups (default 5000);
//! a lookup that is not answered within 2 s counts as failed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{
    agent, cpu_seconds, env_list, generate, now_ts, proc_kib, start_shop, status, wait_ready, Engine, Ingester,
};
use serde_json::json;

fn peak_rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "VmHWM")
}

fn start(dir: &Path, workers: usize) -> Engine {
    start_shop(dir, workers, &[])
}

/// User + system CPU seconds of a process so far.
/// `None` when there is no sample.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p).round() as usize])
}

fn main() {
    // `cargo test --all-targets` runs bench binaries as tests, without
    // `--bench`: the benchmark only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let counts: Vec<u64> = env_list("WEIR_BENCH_EVENTS", "1000000");
    let workers: Vec<usize> = env_list("WEIR_BENCH_WORKERS", "1,2");
    let order_ids: u64 = std::env::var("WEIR_BENCH_ORDER_IDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    // Peak RSS after replay per (workers, events), for the ratio.
    let mut peaks: Vec<(usize, u64, u64)> = Vec::new();
    for &n in &counts {
        let dir: PathBuf = std::env::temp_dir().join(format!("weir-bench-{n}-{}", std::process::id()));
        generate(&dir, n, order_ids);
        for &w in &workers {
            // Each run replays the same log from scratch: its own copy of the catalog-free data dir.
            let run_dir = dir.with_extension(format!("w{w}"));
            let _ = std::fs::remove_dir_all(&run_dir);
            let ok = Command::new("cp")
                .arg("-r")
                .arg(&dir)
                .arg(&run_dir)
                .status()
                .expect("cp");
            assert!(ok.success());
            let started = Instant::now();
            let e = start(&run_dir, w);
            wait_ready(&e);
            let secs = started.elapsed().as_secs_f64();
            let peak = peak_rss_kib(e.child.id());
            peaks.push((w, n, peak));
            println!(
                "{}",
                json!({"bench": "replay", "events": n, "order_ids": order_ids, "workers": w, "seconds": secs,
                       "events_per_second": n as f64 / secs, "peak_rss_mib": peak / 1024})
            );

            // Point lookups while a second client ingests.
            let ingester = Ingester::start(&e.url, 5_000);
            let mut lat = Vec::new();
            let mut failed = 0u64;
            let t0 = Instant::now();
            let lookups: u64 = std::env::var("WEIR_BENCH_LOOKUPS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5_000);
            for i in 0..lookups {
                let t = Instant::now();
                let s = status(&format!(
                    "{}/v1/views/order_status?order_id={}&timeout_ms=2000",
                    e.url,
                    1000 + (i * 7919) % 1000
                ));
                if s == 200 {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            let total = t0.elapsed().as_secs_f64();

            // Read-your-writes under the same load: post one event, then read
            // it back with the ingest's token; the round trip is what a
            // client of a CQRS read model waits for.
            let mut ryw = Vec::new();
            let mut ryw_failed = 0u64;
            let cpu0 = cpu_seconds(e.child.id());
            let c0 = Instant::now();
            for i in 0..lookups.min(200) {
                let id = 90_000_000 + i;
                let t = Instant::now();
                let token = agent()
                    .post(format!("{}/v1/topics/orders/events", e.url))
                    .send(json!({"type": "OrderPlaced", "order_id": id, "customer_id": 1, "product": "sku-mug", "quantity": 1, "price": "7.50", "ts": now_ts()}).to_string())
                    .ok()
                    .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
                    .and_then(|v| v["token"].as_str().map(str::to_string));
                let seen = token.is_some_and(|tok| {
                    agent()
                        .get(format!(
                            "{}/v1/views/order_status?order_id={id}&after={tok}&timeout_ms=5000",
                            e.url
                        ))
                        .call()
                        .ok()
                        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
                        .is_some_and(|v| v["rows"].as_array().is_some_and(|rows| rows.len() == 1))
                });
                if seen {
                    ryw.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    ryw_failed += 1;
                }
            }
            let cpu = (cpu_seconds(e.child.id()) - cpu0) / c0.elapsed().as_secs_f64();
            ingester.stop();
            lat.sort_by(|a, b| a.total_cmp(b));
            ryw.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{}",
                json!({"bench": "lookups", "events": n, "workers": w, "ingest_events_per_second": 5000,
                       "requests": lat.len(), "failed": failed,
                       "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99),
                       "requests_per_second": lat.len() as f64 / total})
            );
            println!(
                "{}",
                json!({"bench": "read_your_writes", "events": n, "workers": w, "ingest_events_per_second": 5000,
                       "requests": ryw.len(), "failed": ryw_failed,
                       "p50_ms": percentile(&ryw, 0.5), "p99_ms": percentile(&ryw, 0.99),
                       "engine_cpu_cores": cpu})
            );

            // HTTP ingest throughput.
            let batches = 200u64;
            let t0 = Instant::now();
            for b in 0..batches {
                let ts = now_ts();
                let body: String = (0..1000)
                    .map(|j| json!({"type": "PaymentAuthorized", "payment_id": b * 1000 + j, "order_id": j, "customer_id": j % 500, "amount": "12.50", "method": "card", "ts": &ts}).to_string() + "\n")
                    .collect();
                let r = agent()
                    .post(format!("{}/v1/topics/payments/events", e.url))
                    .send(body)
                    .expect("ingest");
                assert_eq!(r.status().as_u16(), 200);
            }
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"bench": "ingest", "events": batches * 1000, "workers": w, "batch": 1000,
                       "seconds": secs, "events_per_second": (batches * 1000) as f64 / secs})
            );
            drop(e);
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Memory must follow keys, not events (DESIGN.md §4): peak RSS of the
    // largest run over that of the smallest, per worker count.
    for &w in &workers {
        let runs: Vec<&(usize, u64, u64)> = peaks.iter().filter(|p| p.0 == w).collect();
        if let (Some(small), Some(large)) = (runs.iter().min_by_key(|p| p.1), runs.iter().max_by_key(|p| p.1)) {
            if large.1 > small.1 && small.2 > 0 {
                println!(
                    "{}",
                    json!({"bench": "rss_ratio", "workers": w, "order_ids": order_ids,
                           "small_events": small.1, "large_events": large.1,
                           "ratio": large.2 as f64 / small.2 as f64})
                );
            }
        }
    }
}
