//! The `weir` command: parses the CLI (DESIGN.md §5) and dispatches to the
//! engine (`weir run`, `weir serve`) or a client command.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use weir::cli;
use weir::cli::kafka::KafkaArgs;
use weir::server::{self, ServerArgs};

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
enum DlqCmd {
    /// Lists dead letters, oldest first.
    List {
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Sends dead letters through again: decode failures are read again by
    /// their table's current definition, failed actions are sent again.
    Replay {
        /// Letters by cursor (as `weir dlq list` shows them).
        cursors: Vec<u64>,
        /// Or every letter of this source (a table or a sink) not replayed yet.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Replay letters that were replayed before, too.
        #[arg(long)]
        again: bool,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
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
    /// Prints a view's changes as they happen, one JSON object per line:
    /// a snapshot, then the changes of each completed time.
    Subscribe {
        view: String,
        /// A filter COLUMN=VALUE (repeatable).
        #[arg(long)]
        key: Vec<String>,
        /// Resume after this time (the `as_of` of an event received before).
        #[arg(long)]
        from_as_of: Option<u64>,
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
    /// Dead letters of a running engine: `weir dlq list`, `weir dlq replay`.
    Dlq {
        #[command(subcommand)]
        action: DlqCmd,
    },
    /// Shows a topic's retention and what it holds; with --age, --bytes or
    /// --compact (or --keep-all) sets it. Records go only once every
    /// dataflow that reads them has a snapshot past them.
    Retention {
        topic: String,
        /// e.g. `7 days`, `12h`.
        #[arg(long)]
        age: Option<String>,
        /// e.g. `10 GB`, `500MiB`.
        #[arg(long)]
        bytes: Option<String>,
        /// Key compaction: keep only the latest record per key (every table
        /// reading the topic must be an upsert table).
        #[arg(long)]
        compact: bool,
        /// Keep everything again.
        #[arg(long)]
        keep_all: bool,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Snapshots a job's state now (every job without JOB); the engine
    /// writes them in the background and job status shows them.
    Snapshot {
        job: Option<String>,
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

/// jemalloc returns freed memory to the system and fragments less than
/// glibc's allocator under the many short-lived batches a dataflow
/// allocates: peak RSS then follows live state (DESIGN.md §4).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { paths, server } => server::serve(server, paths),
        Cmd::Serve { server } => server::serve(server, vec![]),
        Cmd::Submit { file, name, url } => cli::client::submit(&file, name, &url),
        Cmd::Sql { statements, url } => cli::client::sql(&statements, &url),
        Cmd::Query {
            view,
            key,
            limit,
            after,
            as_of,
            url,
        } => cli::client::query(&view, &key, limit, &after, as_of, &url),
        Cmd::Subscribe {
            view,
            key,
            from_as_of,
            url,
        } => cli::client::subscribe(&view, &key, from_as_of, &url),
        Cmd::Dlq {
            action: DlqCmd::List { after, limit, url },
        } => cli::client::dlq_list(after, limit, &url),
        Cmd::Dlq {
            action:
                DlqCmd::Replay {
                    cursors,
                    source,
                    limit,
                    again,
                    url,
                },
        } => cli::client::dlq_replay(&cursors, source.as_deref(), limit, again, &url),
        Cmd::Snapshot { job, url } => cli::client::snapshot(job.as_deref(), &url),
        Cmd::Retention {
            topic,
            age,
            bytes,
            compact,
            keep_all,
            url,
        } => cli::client::retention(&topic, age, bytes, compact, keep_all, &url),
        Cmd::Produce {
            topic,
            file,
            url,
            batch,
            kafka,
        } => match kafka.brokers.clone() {
            Some(brokers) => cli::kafka::produce(&topic, file, &brokers, &kafka, batch),
            None => cli::client::produce(&topic, file, &url, batch),
        },
        Cmd::Replay { job, from, url } => cli::client::replay(&job, &from, &url),
        Cmd::Generate {
            events,
            seed,
            order_ids,
            brokers: Some(brokers),
            partitions,
            ..
        } => cli::kafka::generate(events, &brokers, partitions, seed, order_ids),
        Cmd::Generate {
            events,
            data_dir,
            seed,
            batch,
            order_ids,
            brokers: None,
            ..
        } => cli::generate::generate(events, &data_dir, seed, batch, order_ids),
    }
}
