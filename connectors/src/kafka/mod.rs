//! Kafka sources, ingested exactly once into the embedded log, and the
//! producer and topic administration that sinks and `weir produce` use.
//!
//! A Kafka table is read by one ingest thread per table, which copies the
//! topic's records, in offset order per partition, into an embedded log
//! topic (the *mirror*) with one partition per Kafka partition. Each
//! mirrored record carries its Kafka offset, key, value and timestamp
//! ([`Mirrored`]), and is written in the same atomic, synced append as the
//! rest of its batch. So the mirror itself says how far each partition has
//! been read: after a crash or a broker outage the ingest resumes at the
//! record after the last one mirrored, and no record is lost or copied
//! twice. Offsets are committed to the consumer group only so that the
//! usual tools can show the lag.
//!
//! The dataflows read a mirror as they read any log topic: every dataflow
//! processes a Kafka record at the same engine time, history can be
//! replayed into a new version of a job without touching the broker, and
//! read-your-writes tokens naming a Kafka position resolve through the
//! mirror ([`mirrored_at`]).
//!
//! # Layout
//!
//! This is the transport; what a record's bytes mean (JSON values and keys,
//! [`decode_key`]) is in [`crate::decode`].
//!
//! - `client`: what the clients share: request timeouts, the backoff
//!   between attempts, and how librdkafka's errors are classified.
//! - `mirror`: the mirror's record format ([`Mirrored`],
//!   [`MAX_MESSAGE_BYTES`]) and [`mirrored_at`].
//! - `source`: the ingest ([`start_ingest`], [`Ingest`], [`SourceConfig`],
//!   [`Startup`], [`SourceStatus`]): one thread per table that merges the
//!   partitions in timestamp order and appends them to the mirror.
//! - `producer`: the [`Producer`] (idempotent or transactional) and its
//!   delivery reports ([`Delivered`], [`ProduceError`]).
//! - `admin`: [`ensure_topic`], which creates a topic when it is missing.

mod admin;
pub(crate) mod client;
mod mirror;
mod producer;
mod source;

pub use crate::decode::decode_key;
pub use admin::ensure_topic;
pub use mirror::{mirrored_at, Mirrored, MAX_MESSAGE_BYTES};
pub use producer::{Delivered, ProduceError, Producer};
pub use source::{start_ingest, Ingest, KafkaSourceError, SourceConfig, SourceStatus, Startup};
