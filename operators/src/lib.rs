//! Reusable timely/differential operators and the value types they carry.
//!
//! # Layout
//! - [`repr`]: `Datum`, `Row`, `Schema`, SQL types and the SQL order of
//!   values: what every crate agrees on.
//! - [`aggregate`]: SQL aggregates as values: the monoid a group's
//!   count/sum/avg live in (DESIGN.md §4), and folding values into a result.
//! - [`capture`]: an operator's own state written down as of a time, for
//!   snapshots.
//! - [`by_time`]: the keyed "process each complete time in order" skeleton.
//! - [`upsert`]: keyed, sequenced upserts → one row per key.
//! - [`topk`]: top-k per group over append-only input, state bounded by k.
//! - [`cep`]: row pattern recognition (MATCH_RECOGNIZE) behind a watermark:
//!   pattern syntax, compiler, matcher, watermark clock and the operator, one
//!   file each.
//! - [`split`]: a collection of results split into values and errors
//!   without copying a row.
//! - [`sink`]: a collection's changes handed out per complete time.
//! - [`row_batch`]: arrangements of keyed rows with each batch's datums in
//!   one vector (no allocation per row in merges, less memory at rest).
//! - [`read_copy`]: a view's read-optimised copy: versions per worker shard
//!   that any thread can read without the workers.
//!
//! Nothing here does I/O or knows about tokio.

pub mod aggregate;
pub mod by_time;
pub mod capture;
pub mod cep;
pub mod read_copy;
pub mod repr;
pub mod row_batch;
pub mod sink;
pub mod split;
pub mod topk;
pub mod upsert;
