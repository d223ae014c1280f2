//! `weir run` / `weir serve`: opens the store, starts the timely workers,
//! the dead-letter writer and the HTTP server, restores and loads jobs, and
//! stops everything in order (Kafka sources and sinks before the store).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use weir_connectors::store::StateStore;

use crate::cli::generate::feed_shop;
use crate::engine::Engine;
use crate::shared::{now_ms, Shared};
use crate::{http, worker};

#[derive(Args, Clone)]
pub struct ServerArgs {
    #[arg(long, default_value = "./weir-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Timely workers (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Records a source reads from one partition at a time while catching
    /// up (see `shared::DEFAULT_READ_CHUNK`).
    #[arg(long, default_value_t = crate::shared::DEFAULT_READ_CHUNK)]
    pub read_chunk: usize,
    /// The largest request body accepted (bytes); larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Synthetic shop events per second fed into the log (0: none). By
    /// default taken from a `weir.json` in a PATH folder, else 0.
    #[arg(long)]
    pub generate_rate: Option<u64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seconds between snapshots of every job's state (0: none; a clean
    /// stop still writes one). A restart restores them instead of replaying
    /// the whole log.
    #[arg(long, default_value_t = 60)]
    pub snapshot_interval: u64,
    /// Ignore the stored snapshots at start: every job replays its whole
    /// history (the snapshots are kept, and replaced by newer ones).
    #[arg(long)]
    pub replay: bool,
}

/// How often the log is trimmed by the topics' retention policies.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// Fault injection for tests: milliseconds the snapshot writer waits
/// between a snapshot's last part and its manifest.
const STALL_ENV: &str = "WEIR_FAULT_SNAPSHOT_STALL_MS";

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

pub fn serve(args: ServerArgs, paths: Vec<PathBuf>) -> Result<()> {
    let JobFiles { jobs, config } = load_jobs(&paths)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    std::fs::create_dir_all(&args.data_dir)?;
    let store = StateStore::open(&args.data_dir).with_context(|| format!("opening {}", args.data_dir.display()))?;
    let (dlq_tx, dlq_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared::new(store.clone(), workers, args.read_chunk, dlq_tx)?);
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
    let stall = std::env::var(STALL_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    crate::snapshots::start_writer(Arc::clone(&shared), Duration::from_millis(stall))?;
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let timely = worker::start(Arc::clone(&shared), workers, cmd_rx);

    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let engine = Engine::new(Arc::clone(&shared), cmd_tx);
        engine.restore_snapshots(!args.replay);
        let restored = engine
            .restore()
            .map_err(|e| anyhow::anyhow!("restoring the catalog: {e}"))?;
        for (name, sql) in &jobs {
            let existing = engine.job(name).ok();
            let same = existing.as_ref().is_some_and(|j| j.sql == *sql);
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
        if args.snapshot_interval > 0 {
            engine.start_snapshots(Duration::from_secs(args.snapshot_interval));
        }
        engine.start_retention(RETENTION_EVERY);
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
        let app = http::router(http::Api::new(Arc::clone(&engine), args.max_body_bytes));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        eprintln!("weir: stopping");
        // A clean stop leaves a snapshot of every job as it is now, so
        // that the next start has nothing to replay.
        let snapshots = Arc::clone(&engine);
        let _ = tokio::task::spawn_blocking(move || {
            snapshots.snapshot_all();
            if !snapshots.shared.snapshots.wait_idle(Duration::from_secs(30)) {
                eprintln!("weir: the last snapshots did not finish within 30 s; the previous ones stay in force");
            }
        })
        .await;
        engine.shutdown();
        Ok::<_, anyhow::Error>(())
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let workers_done = timely.join();
    // Kafka sources stop before the store closes (each finishes its last
    // append; what it had not appended is read again at the next start).
    shared.connectors.stop_all();
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
