//! The lookup benchmark (issue 12): point lookups of `order_status` against
//! `redis-server` GETs on the same machine in the same run; prints one JSON
//! object per measurement.
//!
//! The shop runs on 2 workers (env `WEIR_BENCH_WORKERS`) over 1M events of
//! history with 50,000 order ids (env `WEIR_BENCH_EVENTS`), while a client
//! ingests 5,000 events/s. For each of 1, 16 and 64 keep-alive connections
//! (env `WEIR_BENCH_CONNECTIONS`), `wrk` (one thread, as `redis-benchmark`
//! has) asks for random keys for
//! `WEIR_BENCH_SECONDS` (default 10) s:
//! - `weir_lookups` with `via: "copy"` (the read-optimised copies) and,
//!   from a copy of the shop whose views opt out (`read_copy = 'off'`),
//!   `via: "workers"` (the command stream): requests/s, p50/p99 ms, the
//!   engine's CPU (cores), and its RSS before the load.
//! - `redis_get`: `redis-benchmark -t get` over the same number of keys
//!   with 100-byte values: requests/s, p50/p99 ms.
//! - `ratio`: weir (copy) over Redis at each connection count; and
//!   `copy_memory`: RSS with copies over RSS without.
//! - `in_process_lookups`: serial lookups through the engine's read path in
//!   process (no HTTP), p50/p99 µs.
//!
//! Needs `wrk`, `redis-server`, `redis-cli` and `redis-benchmark` on the PATH
//! (`scripts/install-bench-deps.sh`). Run: `cargo bench --bench lookups`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_seconds, env_list, generate, proc_kib, start_job, wait_ready, Ingester};
use serde_json::json;

const ORDER_IDS: u64 = 50_000;

/// The shop's job directory with every view opted out of its copy.
fn shop_without_copies(to: &Path) {
    let from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop"));
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("the shop") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let text = if path.extension().is_some_and(|e| e == "sql") {
            opt_out(&text)
        } else {
            text
        };
        std::fs::write(to.join(path.file_name().expect("a name")), text).expect("write");
    }
}

/// `CREATE MATERIALIZED VIEW name AS` → `… name WITH (read_copy = 'off') AS`.
fn opt_out(sql: &str) -> String {
    let mut out = String::new();
    for line in sql.lines() {
        match line.strip_prefix("CREATE MATERIALIZED VIEW ") {
            Some(rest) if rest.trim_end().ends_with(" AS") => {
                let name = rest.trim_end().trim_end_matches(" AS");
                out.push_str(&format!(
                    "CREATE MATERIALIZED VIEW {name} WITH (read_copy = 'off') AS\n"
                ));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Runs `wrk` with `connections` on random `order_status` keys; returns
/// (requests/s, p50 ms, p99 ms).
fn wrk(url: &str, connections: usize, seconds: u64, script: &Path) -> (f64, f64, f64) {
    // One client thread, as `redis-benchmark` has: on two cores the load
    // generator's threads take from the server under test.
    let threads = 1;
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs (scripts/install-bench-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| wrk_ms(v.trim()))
            .unwrap_or(f64::NAN)
    };
    if text.contains("Non-2xx") {
        eprintln!("wrk saw errors: {text}");
    }
    (rps, pct("50%"), pct("99%"))
}

/// `wrk`'s latency with its unit (`812.00us`, `1.20ms`, `2.00s`) in ms.
fn wrk_ms(v: &str) -> f64 {
    let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn weir_runs(
    job_dir: &Path,
    data: &Path,
    workers: usize,
    via: &str,
    connections: &[usize],
    seconds: u64,
    script: &Path,
) -> Vec<(usize, f64)> {
    let e = start_job(job_dir, data, workers, &["--snapshot-interval", "0"]);
    wait_ready(&e);
    std::thread::sleep(Duration::from_secs(2));
    let rss = proc_kib(e.child.id(), "VmRSS");
    let ingester = Ingester::start(&e.url, 5_000);
    let mut rates = Vec::new();
    for &c in connections {
        let cpu0 = cpu_seconds(e.child.id());
        let t0 = Instant::now();
        let (rps, p50, p99) = wrk(&format!("{}/", e.url), c, seconds, script);
        let cores = (cpu_seconds(e.child.id()) - cpu0) / t0.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "weir_lookups", "via": via, "workers": workers, "connections": c,
                   "ingest_events_per_second": 5000, "requests_per_second": rps,
                   "p50_ms": p50, "p99_ms": p99, "engine_cores": cores, "rss_mib": rss / 1024})
        );
        rates.push((c, rps));
    }
    ingester.stop();
    rates.push((0, rss as f64));
    rates
}

fn redis_runs(connections: &[usize], seconds: u64) -> Vec<(usize, f64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/install-bench-deps.sh)");
    let bench = |args: &[&str]| -> String {
        let out = Command::new("redis-benchmark")
            .args(["-p", &port.to_string(), "-r", &ORDER_IDS.to_string(), "-d", "100"])
            .args(args)
            .output()
            .expect("redis-benchmark runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let began = Instant::now();
    let pong = || {
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    };
    while !pong() {
        assert!(began.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every key of the key space set (random keys, 10 times as many sets).
    let _ = bench(&["-t", "set", "-n", &(ORDER_IDS * 10).to_string(), "-q"]);
    let mut rates = Vec::new();
    for &c in connections {
        // About `seconds` long at the rate a first short run shows.
        let probe = parse_redis_csv(&bench(&["-t", "get", "-n", "20000", "-c", &c.to_string(), "--csv"]));
        let n = ((probe.0 * seconds as f64) as u64).max(20_000);
        let (rps, p50, p99) = parse_redis_csv(&bench(&[
            "-t",
            "get",
            "-n",
            &n.to_string(),
            "-c",
            &c.to_string(),
            "--csv",
        ]));
        println!(
            "{}",
            json!({"bench": "redis_get", "connections": c, "keys": ORDER_IDS, "requests_per_second": rps,
                   "p50_ms": p50, "p99_ms": p99})
        );
        rates.push((c, rps));
    }
    let _ = server.kill();
    let _ = server.wait();
    rates
}

/// (requests/s, p50 ms, p99 ms) from `redis-benchmark --csv`'s GET line.
fn parse_redis_csv(text: &str) -> (f64, f64, f64) {
    let header: Vec<String> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|f| f.trim_matches('"').to_string())
        .collect();
    let Some(line) = text.lines().find(|l| l.starts_with("\"GET\"")) else {
        return (0.0, f64::NAN, f64::NAN);
    };
    let fields: Vec<f64> = line
        .split(',')
        .map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| fields.get(i).copied())
            .unwrap_or(f64::NAN)
    };
    (at("rps"), at("p50_latency_ms"), at("p99_latency_ms"))
}

/// Serial point lookups in process (`weir::harness`: the engine's read
/// path without HTTP) on `order_status` over 50,000 orders: p50/p99 µs.
fn in_process(workers: usize) {
    let h = weir::harness::Harness::start(workers).expect("an engine in process");
    let shop = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop"));
    for job in ["01_sources", "02_orders"] {
        let sql = std::fs::read_to_string(shop.join(format!("{job}.sql"))).expect("the shop's SQL");
        h.submit(job, &sql).expect("the job installs");
    }
    let mut tick = 1_000;
    for batch in 0..50u64 {
        let events: Vec<Vec<u8>> = (0..1000)
            .map(|j| {
                let id = 1000 + batch * 1000 + j;
                json!({"type": "OrderPlaced", "order_id": id, "customer_id": j % 500, "product": "sku-mug",
                       "quantity": 1, "price": "7.50", "ts": "2026-12-01T00:00:00Z"})
                .to_string()
                .into_bytes()
            })
            .collect();
        tick += 10;
        h.append(tick, "orders", None, &events).expect("appends");
    }
    h.advance_to(tick + 10);
    // Until every order is in the view.
    let last = vec![("order_id".to_string(), (1000 + ORDER_IDS - 1).to_string())];
    let began = Instant::now();
    while h.lookup("order_status", &last).map(|(_, r)| r.len()).unwrap_or(0) == 0 {
        assert!(began.elapsed() < Duration::from_secs(120), "the orders never showed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let n = 20_000u64;
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = vec![("order_id".to_string(), (1000 + (i * 7919) % ORDER_IDS).to_string())];
        let t = Instant::now();
        let (_, rows) = h.lookup("order_status", &key).expect("a lookup");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(rows.len(), 1, "order {key:?}");
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "{}",
        json!({"bench": "in_process_lookups", "workers": workers, "keys": ORDER_IDS, "lookups": n,
               "p50_us": pct(0.5), "p99_us": pct(0.99)})
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events: u64 = env_list("WEIR_BENCH_EVENTS", "1000000")
        .first()
        .copied()
        .unwrap_or(1_000_000);
    let workers: usize = env_list("WEIR_BENCH_WORKERS", "2").first().copied().unwrap_or(2);
    let connections: Vec<usize> = env_list("WEIR_BENCH_CONNECTIONS", "1,16,64");
    let seconds: u64 = env_list("WEIR_BENCH_SECONDS", "10").first().copied().unwrap_or(10);
    in_process(workers);
    let base: PathBuf = std::env::temp_dir().join(format!("weir-lookups-{}", std::process::id()));
    let script = base.with_extension("lua");
    // `weir generate --order-ids N` numbers orders from 1000.
    std::fs::write(
        &script,
        format!(
            "math.randomseed(os.time())\nrequest = function()\n  return wrk.format(\"GET\", \"/v1/views/order_status?order_id=\" .. math.random(1000, {}))\nend\n",
            1000 + ORDER_IDS - 1
        ),
    )
    .expect("the wrk script");
    let data = base.with_extension("data");
    generate(&data, events, ORDER_IDS);
    let shop = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop"));
    let copy_dir = base.with_extension("copy");
    let _ = Command::new("cp").arg("-r").arg(&data).arg(&copy_dir).status();
    let copy = weir_runs(shop, &copy_dir, workers, "copy", &connections, seconds, &script);
    let without = base.with_extension("shop-no-copies");
    shop_without_copies(&without);
    let workers_dir = base.with_extension("workers");
    let _ = Command::new("cp").arg("-r").arg(&data).arg(&workers_dir).status();
    let through = weir_runs(
        &without,
        &workers_dir,
        workers,
        "workers",
        &connections,
        seconds,
        &script,
    );
    let redis = redis_runs(&connections, seconds);
    for &c in &connections {
        let find = |v: &[(usize, f64)]| v.iter().find(|(n, _)| *n == c).map(|(_, r)| *r).unwrap_or(0.0);
        println!(
            "{}",
            json!({"bench": "ratio", "connections": c,
                   "copy_over_redis": find(&copy) / find(&redis).max(1.0),
                   "copy_over_workers": find(&copy) / find(&through).max(1.0)})
        );
    }
    let rss = |v: &[(usize, f64)]| v.iter().find(|(n, _)| *n == 0).map(|(_, r)| *r).unwrap_or(0.0);
    println!(
        "{}",
        json!({"bench": "copy_memory", "rss_mib_with_copies": rss(&copy) / 1024.0,
               "rss_mib_without": rss(&through) / 1024.0, "ratio": rss(&copy) / rss(&through).max(1.0)})
    );
    for d in [&data, &copy_dir, &workers_dir, &without] {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_file(&script);
}
