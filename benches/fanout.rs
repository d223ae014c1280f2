//! The subscription fan-out benchmark (issue 12): `WEIR_BENCH_SUBSCRIBERS`
//! (default 1000) server-sent-event subscribers on one view
//! (`WEIR_BENCH_VIEW`, default `product_sales`, which every ingested order
//! changes; each subscriber's snapshot is the whole view) while a
//! client ingests 5,000 events/s into the shop (1M events of history, 2
//! workers). Each subscriber is a plain TCP connection read by this
//! process; the delivery latency of a change is the time it arrives less
//! its `as_of` (the engine time it was appended at, wall-clock ms). Prints
//! one JSON object: subscribers connected, changes events received, p50/p99
//! delivery ms, the engine's CPU (cores) and RSS.
//!
//! Run: `cargo bench --bench fanout`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{cpu_seconds, env_list, generate, now_ms, proc_kib, start_shop, wait_ready, Engine, Ingester};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One subscriber: reads events until `until`, returning each changes
/// event's delivery latency (ms).
async fn subscriber(addr: String, view: String, until: Instant) -> Vec<u64> {
    let mut lat = Vec::new();
    let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
        return lat;
    };
    let req = format!("GET /v1/views/{view}/changes HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if conn.write_all(req.as_bytes()).await.is_err() {
        return lat;
    }
    let mut lines = BufReader::new(conn).lines();
    let mut event = String::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return lat;
        }
        let Ok(Ok(Some(line))) = tokio::time::timeout(left, lines.next_line()).await else {
            return lat;
        };
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(id) = line.strip_prefix("id:") {
            if event == "changes" {
                if let Ok(as_of) = id.trim().parse::<u64>() {
                    lat.push(now_ms().saturating_sub(as_of));
                }
            }
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let subscribers: usize = env_list("WEIR_BENCH_SUBSCRIBERS", "1000")
        .first()
        .copied()
        .unwrap_or(1000);
    let seconds: u64 = env_list("WEIR_BENCH_SECONDS", "10").first().copied().unwrap_or(10);
    let view = std::env::var("WEIR_BENCH_VIEW").unwrap_or_else(|_| "product_sales".into());
    let dir: PathBuf = std::env::temp_dir().join(format!("weir-fanout-{}", std::process::id()));
    generate(&dir, 1_000_000, 50_000);
    let e: Engine = start_shop(&dir, 2, &["--snapshot-interval", "0"]);
    wait_ready(&e);
    let addr = e.url.trim_start_matches("http://").to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ingester = Ingester::start(&e.url, 5_000);
    let rss0 = proc_kib(e.child.id(), "VmRSS");
    let cpu0 = cpu_seconds(e.child.id());
    let t0 = Instant::now();
    let until = Instant::now() + Duration::from_secs(seconds);
    let all: Vec<Vec<u64>> = runtime.block_on(async {
        let tasks: Vec<_> = (0..subscribers)
            .map(|_| tokio::spawn(subscriber(addr.clone(), view.clone(), until)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    });
    let cores = (cpu_seconds(e.child.id()) - cpu0) / t0.elapsed().as_secs_f64();
    let rss = proc_kib(e.child.id(), "VmRSS");
    ingester.stop();
    let connected = all.iter().filter(|l| !l.is_empty()).count();
    let mut lat: Vec<u64> = all.into_iter().flatten().collect();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied();
    println!(
        "{}",
        json!({"bench": "fanout", "view": view, "subscribers": subscribers, "receiving": connected, "seconds": seconds,
               "ingest_events_per_second": 5000, "changes_events": lat.len(),
               "delivery_p50_ms": pct(0.5), "delivery_p99_ms": pct(0.99),
               "engine_cores": cores, "rss_mib_before": rss0 / 1024, "rss_mib_during": rss / 1024})
    );
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}
