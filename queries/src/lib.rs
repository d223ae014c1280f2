//! The read side (CQRS' query side): reads of views' arrangements at a
//! consistent time, with read-your-writes (DESIGN.md §2).
//!
//! # Layout
//! One-way, leaves first:
//! - [`error`]: [`ReadError`], why a read failed and whose fault it is.
//! - [`token`]: [`Token`], a write position a read must reflect.
//! - [`progress`]: [`ViewProgress`], one view's trace on every worker, and
//!   how far it may be compacted.
//! - [`frontiers`]: [`Frontiers`], the read policy: every view's progress,
//!   read times chosen and held ([`ReadHold`]) against compaction.
//! - [`peek`]: reading a view's trace on one worker, as of a time, by key or whole.
//! - [`pending`]: [`PeekCommand`]s in flight, their reply channels, and a
//!   worker's answer.
//! - [`eval`]: finishing a query over the rows the workers returned:
//!   filter, project, order, limit.
//! - [`filter`]: `col=value` filters of a view read, served from the index
//!   when they fix its key.
//! - [`copies`]: [`ReadCopies`], every view's read-optimised copy and the
//!   notification its readers wait on.
//! - [`copy_read`]: a read answered from a copy, on the caller's thread.
//! - [`subscribe`]: a subscriber's position in a view's changes, fed from
//!   its copy.
//! - [`reader`]: a read end to end: as-of selection, waiting for tokens,
//!   gathering the workers' parts, planning again after a replace; the
//!   engine answers [`ReadContext`].
//! - [`common_time`]: one read time for several views, for a request
//!   that reads many.
//!
//! Nothing here touches the worker loop or the HTTP server: the engine
//! implements [`ReadContext`], the workers call [`pending::try_answer`].

pub mod common_time;
pub mod copies;
pub mod copy_read;
pub mod error;
pub mod eval;
pub mod filter;
pub mod frontiers;
pub mod peek;
pub mod pending;
pub mod progress;
pub mod reader;
pub mod subscribe;
pub mod token;

pub use copies::{CopyHandle, ReadCopies};
pub use error::ReadError;
pub use frontiers::{Frontiers, ReadHold};
pub use pending::{PeekCommand, PeekReply, PendingPeeks};
pub use progress::{ViewProgress, READABLE_HISTORY_MS};
pub use reader::{ReadContext, ReadOptions, ViewAnswer, ViewVersion};
pub use token::Token;
