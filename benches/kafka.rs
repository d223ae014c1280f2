//! The Kafka benchmark (issue 4): prints one JSON object per measurement.
//!
//! Against a real Kafka-protocol broker (tansu, SQLite storage, started here
//! on 127.0.0.1), with the shop jobs (`examples/shop`) reading their four
//! topics from Kafka:
//! - `prefill`: `weir generate --brokers` writes N shop events (env
//!   `WEIR_BENCH_EVENTS`, default 5,000,000) into 4-partition topics.
//! - `ceiling`: a plain rdkafka consumer that only reads and deserializes
//!   (serde_json) every record of the four topics; events/s.
//! - `catch_up` per worker count (env `WEIR_BENCH_WORKERS`, default `1,2`):
//!   a fresh engine reads the topics from the earliest offset until every
//!   view has caught up; events/s, and the ratio to the ceiling.
//! - `rebuild`: then every job is rebuilt from history (the copy in the
//!   embedded log), one after the other; events/s.
//! - `freshness`: with the last engine, records are produced at a steady
//!   rate (env `WEIR_BENCH_RATE`, default 50,000/s, for
//!   `WEIR_BENCH_SECONDS`, default 20) while a reader measures, for a
//!   sample of them, produce → visible in a view through `after=`; p50/p99.
//!
//! Run: `cargo bench --bench kafka`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::{json, Value};

const TOPICS: [&str; 4] = ["orders", "payments", "inventory", "customers"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn get_json(url: &str) -> Value {
    agent()
        .get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu(dir: &Path, port: u16) -> Proc {
    let bin = std::env::var("WEIR_TANSU").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cargo/bin/tansu")
    });
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts (scripts/install-deps.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}

/// The shop's job files, with their tables reading Kafka.
fn kafka_shop(dir: &Path, brokers: &str) -> PathBuf {
    let out = dir.join("shop-kafka");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let mut sql = std::fs::read_to_string(&path).unwrap();
        for t in TOPICS {
            sql = sql.replace(
                &format!("connector = 'log', topic = '{t}'"),
                &format!("connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = '{t}'"),
            );
        }
        std::fs::write(out.join(path.file_name().unwrap()), sql).unwrap();
    }
    out
}

fn start(jobs: &Path, data: &Path, workers: usize) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(jobs)
        .args(["--generate-rate", "0", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", &workers.to_string()])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let url = format!("http://127.0.0.1:{port}");
    while agent().get(format!("{url}/healthz")).call().is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), url)
}

/// Records copied from Kafka by the engine's sources, over all jobs' tables.
fn ingested(url: &str) -> u64 {
    let jobs = get_json(&format!("{url}/v1/jobs"));
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    for j in jobs.as_array().into_iter().flatten() {
        let name = j["name"].as_str().unwrap_or_default();
        let job = get_json(&format!("{url}/v1/jobs/{name}"));
        for (table, src) in job["kafka_sources"].as_object().into_iter().flatten() {
            if seen.insert(table.clone()) {
                n += src["ingested"].as_u64().unwrap_or(0);
            }
        }
    }
    n
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p).round() as usize])
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events: u64 = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let workers: Vec<usize> = std::env::var("WEIR_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rate: u64 = std::env::var("WEIR_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let seconds: u64 = std::env::var("WEIR_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let root = std::env::temp_dir().join(format!("weir-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let _broker = tansu(&root, port);
    let brokers = format!("127.0.0.1:{port}");

    // Prefill.
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["generate", "--events", &events.to_string(), "--brokers", &brokers])
        .args(["--partitions", "4", "--order-ids", "50000"])
        .output()
        .expect("weir generate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "kafka", "measure": "prefill", "events": events, "seconds": secs, "events_per_s": (events as f64 / secs).round()})
    );

    // The ceiling: read and deserialize every record, nothing else.
    let t0 = Instant::now();
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "weir-bench-ceiling")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut total = 0i64;
    for t in TOPICS {
        for p in 0..4 {
            let (lo, hi) = consumer.fetch_watermarks(t, p, Duration::from_secs(10)).unwrap();
            total += hi - lo;
            tpl.add_partition_offset(t, p, rdkafka::Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut read = 0i64;
    let mut checksum = 0usize;
    while read < total {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or(Value::Null);
            checksum += v.as_object().map_or(0, |o| o.len());
            read += 1;
        }
    }
    drop(consumer);
    let secs = t0.elapsed().as_secs_f64();
    let ceiling = read as f64 / secs;
    println!(
        "{}",
        json!({"bench": "kafka", "measure": "ceiling", "events": read, "seconds": secs, "events_per_s": ceiling.round(), "fields_seen": checksum})
    );

    let jobs = kafka_shop(&root, &brokers);
    let mut last = None;
    for &w in &workers {
        // The previous engine stops first: its sources would keep polling
        // the broker.
        drop(last.take());
        let data = root.join(format!("data-{w}"));
        let t0 = Instant::now();
        let (engine, url) = start(&jobs, &data, w);
        // Caught up: every record copied, and every job ready.
        loop {
            let ready = agent()
                .get(format!("{url}/readyz"))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready && ingested(&url) >= read as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let secs = t0.elapsed().as_secs_f64();
        let eps = read as f64 / secs;
        println!(
            "{}",
            json!({"bench": "kafka", "measure": "catch_up", "workers": w, "events": read, "seconds": secs,
                   "events_per_s": eps.round(), "ratio_to_ceiling": (eps / ceiling * 100.0).round() / 100.0})
        );

        // Rebuild every job from history, one after the other.
        let names: Vec<String> = get_json(&format!("{url}/v1/jobs"))
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["name"].as_str().map(str::to_string))
            .collect();
        let mut rebuilt = 0u64;
        let t0 = Instant::now();
        for name in &names {
            let mut resp = agent()
                .post(format!("{url}/v1/jobs/{name}/rebuild"))
                .send_json(json!({"from": "earliest"}))
                .unwrap();
            let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null);
            let mut total = v["rebuild"]["events_total"].as_u64().unwrap_or(0);
            loop {
                let j = get_json(&format!("{url}/v1/jobs/{name}"));
                if j["status"] != "replacing" {
                    break;
                }
                total = total.max(j["rebuild"]["events_total"].as_u64().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            rebuilt += total;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "kafka", "measure": "rebuild", "workers": w, "jobs": names.len(), "events": rebuilt,
                   "seconds": secs, "events_per_s": (rebuilt as f64 / secs).round()})
        );
        last = Some((engine, url));
    }

    // Freshness at a steady rate, with the last engine.
    let Some((_engine, url)) = last else { return };
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let rx = Arc::new(Mutex::new(rx));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rx = Arc::clone(&rx);
            let lat = Arc::clone(&latencies);
            let url = url.clone();
            std::thread::spawn(move || loop {
                let next = rx.lock().unwrap().recv();
                let Ok((sent, token)) = next else { return };
                let ok = agent()
                    .get(format!(
                        "{url}/v1/views/payments_by_method?after={token}&timeout_ms=30000"
                    ))
                    .call()
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    lat.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    // The steady stream, and on a producer of their own, sampled records
    // whose delivery gives their token.
    let mut producer = weir_connectors::kafka::Producer::new(&brokers).unwrap();
    let mut marker = weir_connectors::kafka::Producer::new(&brokers).unwrap();
    let mut gen = shop_events();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut samples = 0u64;
    let mut next_sample = Instant::now();
    // Produce → acknowledged, of the sampled records: the broker's share.
    let mut acks: Vec<f64> = Vec::new();
    while t0.elapsed() < Duration::from_secs(seconds) {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (topic, event) = gen();
            producer.send(topic, None, Some(event.as_bytes())).unwrap();
            sent += 1;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_millis(50);
            let at = Instant::now();
            let (_, event) = gen();
            marker.send("payments", None, Some(event.as_bytes())).unwrap();
            sent += 1;
            let delivered = marker.flush(Duration::from_secs(30)).unwrap();
            acks.push(at.elapsed().as_secs_f64() * 1000.0);
            if let Some((p, (_, o))) = delivered.iter().next() {
                let _ = tx.send((at, format!("payments:{p}:{o}")));
                samples += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = producer.flush(Duration::from_secs(60));
    let secs = t0.elapsed().as_secs_f64();
    drop(tx);
    for h in handles {
        let _ = h.join();
    }
    acks.sort_by(|a, b| a.total_cmp(b));
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{}",
        json!({"bench": "kafka", "measure": "freshness", "target_events_per_s": rate, "events": sent,
               "achieved_events_per_s": (sent as f64 / secs).round(), "samples": samples, "answered": l.len(),
               "p50_ms": percentile(&l, 0.5), "p99_ms": percentile(&l, 0.99),
               "ack_p50_ms": percentile(&acks, 0.5), "ack_p99_ms": percentile(&acks, 0.99)})
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Shop events for the steady stream (payments and orders, cheap to make).
fn shop_events() -> impl FnMut() -> (&'static str, String) {
    let mut i: u64 = 0;
    move || {
        i += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if i.is_multiple_of(2) {
            (
                "payments",
                json!({"type": "PaymentAuthorized", "payment_id": i, "order_id": i, "customer_id": i % 1000,
                       "amount": "12.50", "method": "card", "ts": now})
                .to_string(),
            )
        } else {
            (
                "orders",
                json!({"type": "OrderPlaced", "order_id": i, "customer_id": i % 1000, "product": "p1",
                       "quantity": 1, "price": "12.50", "ts": now})
                .to_string(),
            )
        }
    }
}
