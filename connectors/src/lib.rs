//! weir's edges: everything that talks to the outside world and to disk
//! (DESIGN.md §1). This crate depends on `weir-operators` only, for the value
//! types of [`weir_operators::repr`].
//!
//! # Layout
//!
//! - [`store`]: the [`StateStore`], the engine's one RocksDB database, and
//!   its key layout. It hands out the three durable views below, all backed
//!   by the same database.
//! - [`clock`]: engine time, the wall clock or one moved by hand.
//! - [`log`]: the embedded event log ([`EventLog`]): partitioned, append-only
//!   topics with dense per-partition offsets and a topic-wide sequence
//!   number; appends are atomic and synced to disk before they return.
//! - [`catalog`]: the job [`Catalog`], job name → spec, listed in creation
//!   order so a restarted engine re-installs jobs before their dependants.
//! - [`dead_letters`]: [`DeadLetters`], events that could not be decoded,
//!   recorded idempotently by id, with per-source counts.
//! - [`ingest`]: [`split_events`] splits an HTTP ingest body (object, array
//!   or NDJSON) into events, rejecting the whole batch with a line and
//!   column on any error.
//! - [`kafka`]: Kafka sources, copied exactly once into the log, and
//!   changelog sinks.
//! - [`source`]: reading a table's records from the log: owned partitions,
//!   the time each is fed at, decoding into rows, upserts, deletes or dead
//!   letters.
//! - [`decode`]: JSON event ↔ [`Row`](weir_operators::repr::Row) of a table
//!   schema ([`decode_json`], [`encode_json`], [`datum_to_json`]) and upsert
//!   deletes ([`is_delete`]).

pub mod catalog;
pub mod clock;
pub mod dead_letters;
pub mod decode;
pub mod ingest;
pub mod kafka;
pub mod log;
pub mod sink;
pub mod source;
pub mod store;

pub use catalog::Catalog;
pub use dead_letters::{DeadLetter, DeadLetters, Position};
pub use decode::{datum_to_json, decode_json, encode_json, is_delete, DecodeError};
pub use ingest::{split_events, IngestError};
pub use log::{Appended, EventLog, LogError, LogRecord, TopicInfo, DEFAULT_PARTITIONS};
pub use store::{Meta, StateStore, StoreError};
