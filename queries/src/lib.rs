//! The read side (CQRS' query side): peeks at views' arrangements as of a
//! consistent time, and the evaluation of one-view queries over their rows.
//!
//! # Layout
//! - [`peek`]: reading a view's trace on one worker, as of a time, by key or whole.
//! - [`eval`]: finishing a query over the rows the workers returned:
//!   filter, project, order, limit.

pub mod eval;
pub mod peek;
