//! The client commands of the CLI and the shop's event generator, kept out
//! of the engine's way: they talk to a running engine over HTTP, to Kafka,
//! or (`weir generate`) to a stopped engine's data directory.
//!
//! # Layout
//! - `client`: submit, sql, query, subscribe, produce (embedded log),
//!   replay, snapshots, retention, dead letters.
//! - `kafka`: `weir produce --brokers` and `weir generate --brokers`.
//! - `generate`: `weir generate` into a data directory, and the live feed
//!   of `--generate-rate`.
//! - `shop`: the shop example's synthetic event stream.

pub mod client;
pub mod generate;
pub mod kafka;
pub mod shop;
