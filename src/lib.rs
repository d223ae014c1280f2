//! weir: a stream-processing engine for event-sourced systems. The binary
//! (`main.rs`) parses the CLI; this library is the engine's wiring, so
//! that tests and benchmarks run the real worker loop in process.
//!
//! # Layout
//! - `main.rs` (the binary): the CLI (DESIGN.md §5): parses and dispatches.
//! - `server.rs`: `weir run`/`weir serve`: opens the store, starts the
//!   workers and the HTTP server, stops them cleanly.
//! - `engine/`: the control plane: job install/replace/drop against the
//!   catalog, connectors, the engine's side of reads, status.
//! - `worker/`: the timely worker loop: one function per command, sources
//!   fed from the log, progress published to the read side.
//! - `shared.rs`: what workers and the control plane share, a handle per concern.
//! - `snapshots.rs`: snapshots between the workers and the control plane,
//!   and the thread that writes them.
//! - `http/`: the HTTP API (axum), one module per resource.
//! - `metrics.rs`: Prometheus metrics.
//! - `cli/`: the client commands (submit, query, produce, replay, …) and
//!   the shop's synthetic event generator.
//! - `harness`: the engine's sources and worker loop run in process on
//!   given events and ticks, for the differential and pattern tests and
//!   the benchmarks.
//!
//! Wiring only: the domain rules live in the library crates (DESIGN.md §1).

pub mod cli;
pub mod engine;
pub mod harness;
pub mod http;
pub mod metrics;
pub mod server;
pub mod shared;
pub mod snapshots;
pub mod worker;
