//! weir's edges: everything that talks to the outside world and to disk
//! (DESIGN.md §1). This crate depends on `weir-operators` only, for the value
//! types of [`weir_operators::repr`].
//!
//! # Layout
//!
//! Files depend on each other one way. The leaves are `error`, `clock`,
//! `keys` and `sync`; `rocks` uses `error`; the store's views `log`, `job_store`,
//! `dead_letters`, `meta` and `snapshots` use those; `store` opens the database and
//! hands the views out. Beside them, `decode` uses `ingest`; `kafka` uses
//! `decode`, `log` and `meta`; `sink` uses `kafka`, `decode` and `meta`; `action` uses `sink`, `log`,
//! `dead_letters` and `decode`.
//!
//! - [`error`]: [`ErrorKind`], whose fault an error is (the user's, an
//!   external system's, weir's); every error type of this crate has
//!   `kind()` and `retryable()`.
//! - [`clock`]: engine time, the wall clock or one moved by hand.
//! - [`keys`]: the state store's key layout: which record kind each key
//!   prefix holds, and its [`FORMAT_VERSION`](keys::FORMAT_VERSION).
//! - `rocks` (private): the RocksDB helpers the views share (durable
//!   writes, prefix scans) and the [`StoreError`].
//! - [`store`]: the [`StateStore`], the engine's one RocksDB database. It
//!   hands out the durable views below, all backed by the same database.
//! - [`log`]: the embedded event log ([`EventLog`]): partitioned, append-only
//!   topics with dense per-partition offsets and a topic-wide sequence
//!   number; appends are atomic and synced to disk before they return.
//! - [`job_store`]: the durable [`JobStore`], job name → spec, listed in
//!   creation order so a restarted engine re-installs jobs before their
//!   dependants.
//! - [`dead_letters`]: [`DeadLetters`], events that could not be decoded,
//!   recorded idempotently by id, with per-source counts.
//! - [`meta`]: [`Meta`], small durable settings of the connectors by key.
//! - [`retention`]: per-topic retention policies, and which records one
//!   lets go.
//! - [`compaction`]: key compaction of upsert topics (the latest record
//!   of each key stays).
//! - [`snapshots`]: [`Snapshots`], the dataflows' durable snapshots: parts
//!   of opaque entries, complete once their manifest is written.
//! - [`ingest`]: [`split_events`] splits an HTTP ingest body (object, array
//!   or NDJSON) into events, rejecting the whole batch with a line and
//!   column on any error.
//! - [`decode`]: the JSON format: event ↔
//!   [`Row`](weir_operators::repr::Row) of a table schema ([`decode_json`],
//!   [`encode_json`], [`datum_to_json`]), Kafka keys ([`decode_key`]) and
//!   upsert deletes ([`is_delete`]).
//! - [`kafka`]: the Kafka transport: sources, copied exactly once into the
//!   log; the producer and topic administration.
//! - [`source`]: reading a table's records from the log: owned partitions,
//!   the time each is fed at, decoding into rows, upserts, deletes or dead
//!   letters.
//! - [`sink`]: what every sink shares (the dataflow's messages, progress,
//!   status) and Kafka changelog sinks, at-least-once or exactly-once.
//! - [`action`]: action sinks: an HTTP request per change of a view, with
//!   retries, a circuit breaker and fallbacks, outcomes as events.
//! - [`schedule`]: schedule tables' ticks, appended once per interval.

pub mod action;
pub mod clock;
pub mod compaction;
pub mod dead_letters;
pub mod decode;
pub mod error;
pub mod ingest;
pub mod job_store;
pub mod kafka;
pub mod keys;
pub mod log;
pub mod meta;
mod one_pass;
pub mod retention;
mod rocks;
pub mod schedule;
pub mod sink;
pub mod snapshots;
pub mod source;
pub mod store;
mod sync;

pub use dead_letters::{DeadLetter, DeadLetters, Position};
pub use decode::{datum_to_json, decode_json, decode_key, encode_json, is_delete, DecodeError, KeyDecodeError};
pub use error::ErrorKind;
pub use ingest::{split_events, IngestError};
pub use job_store::JobStore;
pub use log::{Appended, EventLog, LogError, LogRecord, TopicInfo, DEFAULT_PARTITIONS};
pub use meta::Meta;
pub use sink::SinkError;
pub use snapshots::{SnapshotManifest, Snapshots};
pub use store::{StateStore, StoreError};
