//! The action sink benchmark (issue 14): a local HTTP service in this
//! process answers every request at once; for each `max.in.flight` of
//! `WEIR_BENCH_IN_FLIGHT` (default 1,16,64) a fresh engine (2 workers)
//! runs one job whose sink calls it for each new order.
//!
//! - **throughput**: `WEIR_BENCH_ACTIONS` (default 20,000) orders are
//!   ingested at once; actions/s is the number of requests over the time
//!   from the first request's arrival to the last's;
//! - **latency**: then orders are ingested at a steady 200/s for 5 s; the
//!   added latency of each request is its arrival less its `Weir-As-Of`
//!   header (the engine time the order was appended, wall-clock ms):
//!   p50/p99 from view change to request.
//!
//! - **sagas**: the saga example (examples/saga: four steps, each an action
//!   sink; services.py answering at once, never failing) on
//!   `WEIR_BENCH_SAGAS` (default 2,000) orders placed at once: completed
//!   sagas/s, from the first order to the last saga completed.
//!
//! Prints one JSON object per setting. Run: `cargo bench --bench actions`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::{agent, cpu_seconds, env_list, now_ms, Engine};
use serde_json::json;

/// What the service saw: (arrival instant, arrival ms − Weir-As-Of).
type Arrivals = Arc<Mutex<Vec<(Instant, u64)>>>;

fn start_service(arrivals: Arrivals) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().fallback(move |headers: HeaderMap| {
                let arrivals = Arc::clone(&arrivals);
                async move {
                    let as_of: u64 = headers
                        .get("weir-as-of")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let lag = now_ms().saturating_sub(as_of);
                    if let Ok(mut a) = arrivals.lock() {
                        a.push((Instant::now(), lag));
                    }
                    "{\"ok\":true}"
                }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    format!("http://{addr}")
}

fn post(url: &str, body: String) {
    let r = agent().post(url).content_type("application/json").send(body);
    assert!(r.is_ok_and(|r| r.status() == 200), "ingest failed");
}

fn orders(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| json!({"order_id": i, "customer_id": i % 1000, "amount": "9.99"}).to_string() + "\n")
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn wait_for(arrivals: &Arrivals, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while arrivals.lock().map_or(0, |a| a.len()) < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The saga example's completed sagas/s.
fn sagas(n: u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let mut services = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/saga/services.py"))
        .args(["--port", &port.to_string(), "--fail", "0", "--latency-ms", "0"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs the services");
    std::thread::sleep(Duration::from_secs(1));
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/saga/saga.sql"))
        .expect("the saga's SQL")
        .replace("http://127.0.0.1:9900", &format!("http://127.0.0.1:{port}"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let job_dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(job_dir.path().join("saga.sql"), sql).expect("job file");
    let e: Engine = common::start_job(job_dir.path(), dir.path(), 2, &[]);
    common::wait_ready(&e);
    let began = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let body: String = (chunk * 1000..(chunk * 1000 + 1000).min(n))
            .map(|i| json!({"order_id": i, "customer_id": i % 100, "product": format!("sku-{}", i % 10), "quantity": 1, "amount": "9.99", "email": "c@example.com", "ts": now_ms()}).to_string() + "\n")
            .collect();
        post(&format!("{}/v1/topics/saga_orders/events", e.url), body);
    }
    let mut completed = 0;
    while began.elapsed() < Duration::from_secs(600) {
        let v = common::get_json(&format!("{}/v1/views/saga_state?limit=1000000", e.url));
        completed = v
            .and_then(|v| {
                v["rows"]
                    .as_array()
                    .map(|r| r.iter().filter(|r| r["state"] == "completed").count())
            })
            .unwrap_or(0);
        if completed as u64 >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "sagas", "orders": n, "completed": completed, "seconds": secs, "sagas_per_s": (completed as f64 / secs).round()})
    );
    drop(e);
    let _ = services.kill();
    let _ = services.wait();
}

fn main() {
    // `--bench`: the benchmark only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let actions: u64 = env_list("WEIR_BENCH_ACTIONS", "20000")
        .first()
        .copied()
        .unwrap_or(20_000);
    for in_flight in env_list::<u64>("WEIR_BENCH_IN_FLIGHT", "1,16,64") {
        let arrivals: Arrivals = Arc::default();
        let service = start_service(Arc::clone(&arrivals));
        let dir = tempfile::tempdir().expect("a temp dir");
        let job_dir = tempfile::tempdir().expect("a temp dir");
        let sql = format!(
            "CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, amount DECIMAL(12,2))
  WITH (connector = 'log', topic = 'orders', format = 'json');
CREATE MATERIALIZED VIEW to_charge AS SELECT order_id, customer_id, amount FROM orders;
CREATE SINK charge FROM to_charge WITH (connector = 'http', url = '{service}/charge/{{order_id}}',
  'max.in.flight' = '{in_flight}');"
        );
        std::fs::write(job_dir.path().join("charge.sql"), sql).expect("job file");
        let e: Engine = common::start_job(job_dir.path(), dir.path(), 2, &[]);
        common::wait_ready(&e);
        let pid = e.child.id();
        let cpu0 = cpu_seconds(pid);
        let url = format!("{}/v1/topics/orders/events", e.url);
        let began = Instant::now();
        for chunk in 0..actions.div_ceil(1000) {
            let n = (actions - chunk * 1000).min(1000);
            post(&url, orders(chunk * 1000, n));
        }
        let all = wait_for(&arrivals, actions as usize, Duration::from_secs(600));
        let burst_wall = began.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let (first, last) = {
            let a = arrivals.lock().expect("arrivals");
            (a.first().map(|x| x.0), a.last().map(|x| x.0))
        };
        let span = match (first, last) {
            (Some(f), Some(l)) => (l - f).as_secs_f64().max(1e-6),
            _ => f64::NAN,
        };
        // Latency at a steady, light load.
        let before = arrivals.lock().map_or(0, |a| a.len());
        let paced = 1000u64;
        let start = Instant::now();
        for i in 0..paced / 10 {
            let due = start + Duration::from_millis(50 * i);
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            post(&url, orders(10_000_000 + i * 10, 10));
        }
        wait_for(&arrivals, before + paced as usize, Duration::from_secs(60));
        let mut lags: Vec<u64> = arrivals.lock().expect("arrivals")[before..]
            .iter()
            .map(|x| x.1)
            .collect();
        lags.sort_unstable();
        let rss_kib = common::proc_kib(pid, "VmHWM");
        println!(
            "{}",
            json!({
                "bench": "actions",
                "max_in_flight": in_flight,
                "actions": actions,
                "all_delivered": all,
                "actions_per_s": (actions as f64 / span).round(),
                "ingest_to_last_delivery_s": burst_wall,
                "engine_cpu_cores": cpu / burst_wall,
                "latency_at_200_per_s_ms": {"p50": percentile(&lags, 0.5), "p99": percentile(&lags, 0.99), "n": lags.len()},
                "engine_peak_rss_mib": rss_kib / 1024,
            })
        );
        drop(e);
    }
    let n: u64 = env_list("WEIR_BENCH_SAGAS", "2000").first().copied().unwrap_or(2000);
    if n > 0 {
        sagas(n);
    }
}
