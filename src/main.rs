//! weir: a stream-processing engine for event-sourced systems.
//!
//! # Layout
//! - `main.rs`: the CLI (DESIGN.md §5) and the engine's start and stop.
//! - `engine.rs`: the control plane: catalog, job install/replace, reads.
//! - `worker.rs`: the timely worker loop: commands, sources, peeks.
//! - `shared.rs`: what workers and the control plane share.
//! - `http.rs`: the HTTP API (axum).
//! - `shop.rs`: the shop example's synthetic event stream.
//! - `metrics.rs`: Prometheus metrics.

mod engine;
mod http;
mod metrics;
mod shared;
mod shop;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use weir_connectors::store::StateStore;

use crate::engine::Engine;
use crate::shared::{lock, now_ms, Shared};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "SQL read models and CEP rules over event streams, queried live over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Engine + HTTP, installing the jobs in PATHs (.sql files, or folders of them: one job per file).
    Run {
        paths: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Engine + HTTP with no jobs besides those already in the catalog.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Submits (or replaces) a job on a running engine.
    Submit {
        file: PathBuf,
        /// The job's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Runs DROP TABLE / DROP VIEW statements on a running engine.
    Sql {
        statements: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Reads a view of a running engine.
    Query {
        view: String,
        /// A filter COLUMN=VALUE (repeatable); a key column is served from the index.
        #[arg(long)]
        key: Vec<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// Wait until the view reflects this write (a token from ingest; repeatable).
        #[arg(long)]
        after: Vec<String>,
        /// Read at exactly this time (the `as_of` of another answer).
        #[arg(long)]
        as_of: Option<u64>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Appends NDJSON (FILE, or standard input) to a topic of a running
    /// engine's log, or with --brokers to a Kafka topic; prints a token
    /// (topic:partition:offset) per batch and partition, for `after=`.
    Produce {
        topic: String,
        file: Option<PathBuf>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Events per request (embedded log) or per flush (Kafka).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Rebuilds a job's views from its sources' history (Kafka and the
    /// embedded log alike) while the old views keep serving; shows progress
    /// until the new views are swapped in.
    Replay {
        job: String,
        /// `earliest`, milliseconds since the epoch, or an RFC 3339 time.
        #[arg(long, default_value = "earliest")]
        from: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Writes the shop's synthetic events straight into a data directory's
    /// log (the engine must not be running on it), for loading volume.
    Generate {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value = "./weir-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Events per append (one durable write each).
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Reuse order ids from a fixed set of this many (default: every
        /// order gets a new id).
        #[arg(long)]
        order_ids: Option<i64>,
        /// Write to these Kafka brokers' topics (created with
        /// --partitions if missing) instead of the data directory's log.
        #[arg(long)]
        brokers: Option<String>,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
}

/// Where `weir produce` writes when it writes to Kafka.
#[derive(Args, Clone)]
struct KafkaArgs {
    /// Kafka bootstrap servers: produce to Kafka instead of the engine's log.
    #[arg(long)]
    brokers: Option<String>,
    /// Key each record by these fields (comma-separated), as a JSON object;
    /// an event with `"__op": "delete"` is then sent as a tombstone.
    #[arg(long)]
    key: Option<String>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
}

#[derive(Args, Clone)]
struct ServerArgs {
    #[arg(long, default_value = "./weir-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Timely workers (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Records a source reads from one partition at a time while catching up.
    #[arg(long, default_value_t = 20_000)]
    read_chunk: usize,
    /// The largest request body accepted (bytes); larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Synthetic shop events per second fed into the log (0: none). By
    /// default taken from a `weir.json` in a PATH folder, else 0.
    #[arg(long)]
    generate_rate: Option<u64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// jemalloc returns freed memory to the system and fragments less than
/// glibc's allocator under the many short-lived batches a dataflow
/// allocates: peak RSS then follows live state (DESIGN.md §4).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { paths, server } => serve(server, paths),
        Cmd::Serve { server } => serve(server, vec![]),
        Cmd::Submit { file, name, url } => submit(&file, name, &url),
        Cmd::Sql { statements, url } => print_response(
            agent()
                .post(format!("{url}/v1/sql"))
                .send_json(serde_json::json!({"sql": statements})),
        ),
        Cmd::Query {
            view,
            key,
            limit,
            after,
            as_of,
            url,
        } => query(&view, &key, limit, &after, as_of, &url),
        Cmd::Produce {
            topic,
            file,
            url,
            batch,
            kafka,
        } => match kafka.brokers.clone() {
            Some(brokers) => produce_kafka(&topic, file, &brokers, &kafka, batch),
            None => produce(&topic, file, &url, batch),
        },
        Cmd::Replay { job, from, url } => replay(&job, &from, &url),
        Cmd::Generate {
            events,
            seed,
            order_ids,
            brokers: Some(brokers),
            partitions,
            ..
        } => generate_kafka(events, &brokers, partitions, seed, order_ids),
        Cmd::Generate {
            events,
            data_dir,
            seed,
            batch,
            order_ids,
            brokers: None,
            ..
        } => generate(events, &data_dir, seed, batch, order_ids),
    }
}

/// What the PATHs of `weir run` hold.
struct JobFiles {
    /// (job name, SQL), one per .sql file.
    jobs: Vec<(String, String)>,
    /// A folder's `weir.json`, if any.
    config: Option<Value>,
}

fn load_jobs(paths: &[PathBuf]) -> Result<JobFiles> {
    let mut jobs = Vec::new();
    let mut config = None;
    for p in paths {
        let mut files = Vec::new();
        if p.is_dir() {
            for entry in std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
                let f = entry?.path();
                if f.extension().is_some_and(|e| e == "sql") {
                    files.push(f);
                }
            }
            files.sort();
            let cfg = p.join("weir.json");
            if cfg.exists() {
                let text = std::fs::read_to_string(&cfg)?;
                config = Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", cfg.display()))?);
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{} does not exist", p.display());
        }
        for f in files {
            let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("job").to_string();
            let sql = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            jobs.push((name, sql));
        }
    }
    Ok(JobFiles { jobs, config })
}

fn serve(args: ServerArgs, paths: Vec<PathBuf>) -> Result<()> {
    let JobFiles { jobs, config } = load_jobs(&paths)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    std::fs::create_dir_all(&args.data_dir)?;
    let store = StateStore::open(&args.data_dir).with_context(|| format!("opening {}", args.data_dir.display()))?;
    let (dlq_tx, dlq_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared {
        log: store.log(),
        store: store.clone(),
        workers,
        read_chunk: args.read_chunk.max(1),
        metrics: metrics::Metrics::new()?,
        frontiers: Mutex::new(HashMap::new()),
        read_through: Mutex::new(HashMap::new()),
        since: Mutex::new(HashMap::new()),
        lag: Mutex::new(HashMap::new()),
        peek_replies: Mutex::new(HashMap::new()),
        dead_letters: Mutex::new(dlq_tx),
        worker_threads: Mutex::new(Vec::new()),
        ingests: Mutex::new(BTreeMap::new()),
        sinks: Mutex::new(BTreeMap::new()),
    });
    // Dead letters are written durably off the workers' threads.
    let dlq_store = store.dead_letters();
    let dlq_thread = std::thread::Builder::new()
        .name("weir-dead-letters".into())
        .spawn(move || {
            while let Ok(letter) = dlq_rx.recv() {
                if let Err(e) = dlq_store.record(&letter) {
                    eprintln!("weir: cannot record a dead letter: {e}");
                }
            }
        })?;
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let timely = worker::start(Arc::clone(&shared), workers, cmd_rx);

    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let engine = Engine::new(Arc::clone(&shared), cmd_tx);
        let restored = engine
            .restore()
            .map_err(|e| anyhow::anyhow!("restoring the catalog: {e}"))?;
        for (name, sql) in &jobs {
            let existing = engine.job(name).ok();
            let same = existing.as_ref().and_then(|j| j.get("sql")).and_then(Value::as_str) == Some(sql.as_str());
            if !same {
                engine
                    .submit(name, sql, existing.is_some())
                    .map_err(|e| anyhow::anyhow!("job {name}: {e}"))?;
            }
        }
        let rate = args
            .generate_rate
            .or_else(|| {
                config
                    .as_ref()
                    .and_then(|c| c.get("generate_rate"))
                    .and_then(Value::as_u64)
            })
            .unwrap_or(0);
        if rate > 0 {
            let log = shared.log.clone();
            let seed = args.seed ^ now_ms();
            tokio::spawn(async move { feed_shop(log, rate, seed).await });
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "weir: {} workers, data in {}, {} jobs restored, {} loaded; listening on http://{}",
            workers,
            args.data_dir.display(),
            restored,
            jobs.len(),
            args.listen
        );
        let app = http::router(http::Api {
            engine: Arc::clone(&engine),
            max_body: args.max_body_bytes,
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        eprintln!("weir: stopping");
        engine.shutdown();
        Ok::<_, anyhow::Error>(())
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let workers_done = timely.join();
    // Kafka sources stop before the store closes (each finishes its last
    // append; what it had not appended is read again at the next start).
    drop(std::mem::take(&mut *lock(&shared.ingests)));
    drop(std::mem::take(&mut *lock(&shared.sinks)));
    // The dead letters still queued are written once nothing can add more:
    // the last holder of `shared` (and so of the queue's sender) is gone.
    if Arc::strong_count(&shared) == 1 {
        drop(shared);
        let _ = dlq_thread.join();
    }
    store.stop_background_work();
    result?;
    match workers_done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("dataflow workers failed: {e}"),
        Err(_) => bail!("dataflow workers panicked"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Appends the synthetic shop stream to the log at `rate` events per second.
async fn feed_shop(log: weir_connectors::log::EventLog, rate: u64, seed: u64) {
    let mut gen = shop::ShopGenerator::new(seed, now_ms() as i64, rate);
    // Batches of 1/10 s: ten durable appends per second per topic at most.
    let per_tick = (rate / 10).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let mut by_topic: HashMap<&'static str, Vec<Vec<u8>>> = HashMap::new();
        for _ in 0..per_tick {
            let (topic, event) = gen.next_event();
            by_topic.entry(topic).or_default().push(event.to_string().into_bytes());
        }
        let log = log.clone();
        let result = tokio::task::spawn_blocking(move || {
            for (topic, events) in by_topic {
                log.append(topic, None, &events)?;
            }
            Ok::<_, weir_connectors::log::LogError>(())
        })
        .await;
        if let Ok(Err(e)) = result {
            eprintln!("weir: the shop generator stopped: {e}");
            return;
        }
    }
}

fn generate(events: u64, data_dir: &Path, seed: u64, batch: usize, order_ids: Option<i64>) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = StateStore::open(data_dir)
        .with_context(|| format!("opening {} (is an engine running on it?)", data_dir.display()))?;
    let log = store.log();
    // Event time: ending now, 1 ms apart.
    let start = now_ms() as i64 - events as i64;
    let mut gen = shop::ShopGenerator::new(seed, start, 1000);
    if let Some(n) = order_ids {
        gen = gen.with_order_ids(n);
    }
    let mut by_topic: HashMap<&'static str, Vec<Vec<u8>>> = HashMap::new();
    let mut written = 0u64;
    while written < events {
        let (topic, event) = gen.next_event();
        let buf = by_topic.entry(topic).or_default();
        buf.push(event.to_string().into_bytes());
        written += 1;
        if buf.len() >= batch {
            log.append(topic, None, buf)?;
            buf.clear();
        }
    }
    for (topic, buf) in by_topic {
        if !buf.is_empty() {
            log.append(topic, None, &buf)?;
        }
    }
    println!("{}", serde_json::json!({"events": written, "topics": log.topics()}));
    Ok(())
}

fn client_error(e: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn print_response(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<()> {
    let mut resp = resp.map_err(client_error)?;
    let status = resp.status();
    let body = resp.body_mut().read_to_string().map_err(client_error)?;
    let pretty = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    println!("{pretty}");
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn submit(file: &Path, name: Option<String>, url: &str) -> Result<()> {
    let sql = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = name.unwrap_or_else(|| file.file_stem().and_then(|s| s.to_str()).unwrap_or("job").to_string());
    let agent = agent();
    let exists = agent
        .get(format!("{url}/v1/jobs/{name}"))
        .call()
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let resp = if exists {
        agent
            .put(format!("{url}/v1/jobs/{name}"))
            .send_json(serde_json::json!({"sql": sql}))
    } else {
        agent
            .post(format!("{url}/v1/jobs"))
            .send_json(serde_json::json!({"name": name, "sql": sql}))
    };
    print_response(resp)
}

fn query(
    view: &str,
    keys: &[String],
    limit: Option<usize>,
    after: &[String],
    as_of: Option<u64>,
    url: &str,
) -> Result<()> {
    let mut req = agent().get(format!("{url}/v1/views/{view}"));
    for k in keys {
        let Some((c, v)) = k.split_once('=') else {
            bail!("--key takes COLUMN=VALUE, got {k}");
        };
        req = req.query(c, v);
    }
    if let Some(l) = limit {
        req = req.query("limit", l.to_string());
    }
    for t in after {
        req = req.query("after", t);
    }
    if let Some(t) = as_of {
        req = req.query("as_of", t.to_string());
    }
    print_response(req.call())
}

fn produce(topic: &str, file: Option<PathBuf>, url: &str, batch: usize) -> Result<()> {
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let agent = agent();
    for chunk in lines.chunks(batch.max(1)) {
        let body = chunk.join("\n");
        print_response(
            agent
                .post(format!("{url}/v1/topics/{topic}/events"))
                .content_type("application/x-ndjson")
                .send(body),
        )?;
    }
    Ok(())
}

/// `weir produce --brokers`: NDJSON to a Kafka topic, keyed by `--key`.
fn produce_kafka(topic: &str, file: Option<PathBuf>, brokers: &str, args: &KafkaArgs, batch: usize) -> Result<()> {
    use weir_connectors::kafka::{ensure_topic, Producer};
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    if let Some(n) = args.partitions {
        ensure_topic(brokers, topic, n)?;
    }
    let key_fields: Vec<&str> = args
        .key
        .as_deref()
        .map(|k| k.split(',').map(str::trim).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    let mut producer = Producer::new(brokers)?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    for chunk in lines.chunks(batch.max(1)) {
        for (n, line) in chunk {
            let event: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
            let (key, value) = kafka_record(&event, line, &key_fields).with_context(|| format!("line {}", n + 1))?;
            producer.send(topic, key.as_deref(), value.as_deref())?;
        }
        let delivered = producer.flush(Duration::from_secs(60))?;
        for (partition, (first, last)) in delivered {
            println!(
                "{}",
                serde_json::json!({
                    "topic": topic, "partition": partition, "first_offset": first, "last_offset": last,
                    "token": format!("{topic}:{partition}:{last}"),
                })
            );
        }
    }
    Ok(())
}

/// The key and value of one event: the key is a JSON object of
/// `key_fields` (none: no key); a keyed `"__op": "delete"` event is a
/// tombstone.
fn kafka_record(event: &serde_json::Value, line: &str, key_fields: &[&str]) -> Result<weir_connectors::sink::Record> {
    if key_fields.is_empty() {
        return Ok((None, Some(line.as_bytes().to_vec())));
    }
    let obj = event.as_object().context("an event must be a JSON object")?;
    let mut key = serde_json::Map::new();
    for f in key_fields {
        let v = obj
            .get(*f)
            .with_context(|| format!("the event has no key field \"{f}\""))?;
        key.insert(f.to_string(), v.clone());
    }
    let key = serde_json::to_vec(&key)?;
    let delete = obj.get("__op").and_then(|v| v.as_str()) == Some("delete");
    Ok((Some(key), (!delete).then(|| line.as_bytes().to_vec())))
}

/// `weir generate --brokers`: the shop's events into Kafka topics.
fn generate_kafka(events: u64, brokers: &str, partitions: i32, seed: u64, order_ids: Option<i64>) -> Result<()> {
    use weir_connectors::kafka::{ensure_topic, Producer};
    let start = now_ms() as i64 - events as i64;
    let mut gen = shop::ShopGenerator::new(seed, start, 1000);
    if let Some(n) = order_ids {
        gen = gen.with_order_ids(n);
    }
    let mut producer = Producer::new(brokers)?;
    let mut created: HashMap<&'static str, i32> = HashMap::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for i in 0..events {
        let (topic, event) = gen.next_event();
        if !created.contains_key(topic) {
            created.insert(topic, ensure_topic(brokers, topic, partitions)?);
        }
        producer.send(topic, None, Some(event.to_string().as_bytes()))?;
        *counts.entry(topic).or_default() += 1;
        if i % 100_000 == 99_999 {
            producer.flush(Duration::from_secs(120))?;
        }
    }
    producer.flush(Duration::from_secs(120))?;
    println!(
        "{}",
        serde_json::json!({"events": events, "brokers": brokers, "topics": counts})
    );
    Ok(())
}

/// `weir replay`: starts a rebuild and draws its progress on stderr.
fn replay(job: &str, from: &str, url: &str) -> Result<()> {
    use std::io::Write as _;
    let from = match from.parse::<u64>() {
        Ok(ms) => serde_json::json!(ms),
        Err(_) => serde_json::json!(from),
    };
    let agent = agent();
    let started: serde_json::Value = agent
        .post(format!("{url}/v1/jobs/{job}/rebuild"))
        .send_json(serde_json::json!({ "from": from }))
        .map_err(client_error)?
        .body_mut()
        .read_json()?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = String::new();
    let mut status = started;
    loop {
        if status["status"] != "replacing" {
            break;
        }
        let p = &status["rebuild"];
        let done = p["events_done"].as_u64().unwrap_or(0);
        let total = p["events_total"].as_u64().unwrap_or(0).max(1);
        let width = 30;
        let filled = ((done as f64 / total as f64) * width as f64).round() as usize;
        let eta = p["eta_s"].as_f64().map_or("?".to_string(), |e| format!("{e:.0}s"));
        let line = format!(
            "[{}{}] {:>3}% {done}/{total} events, {} events/s, ETA {eta}",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            done * 100 / total,
            p["rate_per_s"].as_f64().unwrap_or(0.0) as u64,
        );
        if interactive {
            eprint!("\r{line}");
        } else if line != last_line {
            eprintln!("{line}");
        }
        last_line = line;
        let _ = std::io::stderr().flush();
        std::thread::sleep(Duration::from_millis(200));
        status = agent
            .get(format!("{url}/v1/jobs/{job}"))
            .call()
            .map_err(client_error)?
            .body_mut()
            .read_json()?;
    }
    if interactive {
        eprintln!();
    }
    eprintln!("weir: job {job} rebuilt; its new views are serving");
    println!("{status}");
    Ok(())
}
