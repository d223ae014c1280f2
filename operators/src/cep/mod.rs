//! Row pattern recognition (`MATCH_RECOGNIZE`, docs/cep.md) as a timely
//! operator.
//!
//! Three layers:
//! - [`Program`]: a pattern compiled to instructions of a Pike VM. Threads are
//!   kept in preferment order (greedy before reluctant, left alternatives
//!   first); the first thread to reach `Match` cuts every thread behind it, so
//!   the surviving match is the one the standard prefers, found in one pass
//!   over the rows instead of by backtracking.
//! - [`Partition`]: one partition's rows in event-time order and the attempt
//!   in progress from its current start row.
//! - [`match_recognize`]: the dataflow operator. It orders rows by event time
//!   behind a watermark, routes partitions to workers, fires time-outs as the
//!   watermark passes them and drops every partial match older than `WITHIN`,
//!   so its state is bounded by the rows inside that interval.
//!
//! # Layout
//! One concern per file; each uses only the ones listed before it.
//! - `pattern`: the pattern syntax the planner builds ([`Pattern`],
//!   [`Skip`], [`VarId`]).
//! - `program`: the compiler from a pattern to a [`Program`].
//! - `matcher`: one partition's matching ([`Partition`], [`Matcher`]) and
//!   what a [`Rule`]'s expressions see ([`Ctx`], [`Bindings`]).
//! - `clock`: event time and the watermark ([`Watermark`]).
//! - `operator`: the timely operator [`match_recognize`] and its gauges
//!   ([`CepStats`]).

mod clock;
mod matcher;
mod operator;
mod pattern;
mod program;

pub use clock::Watermark;
pub use matcher::{Bind, Bindings, Ctx, Emitted, Matcher, Partition, Rule, RuleError, DEFAULT_MAX_ROWS};
pub use operator::{match_recognize, CepStats, Layout, PatternEntry, PatternState, Rejects, Rows};
pub use pattern::{Pattern, Skip, VarId};
pub use program::{CepError, Program, MAX_INSTRUCTIONS};
