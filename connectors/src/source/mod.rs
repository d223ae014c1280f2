//! Reading a table's records from the log: which partitions a worker owns
//! and how far it has read them ([`reader`]), at which engine time each
//! record is fed ([`feeding`]), and decoding each record into a row, an
//! upsert or a delete, or a dead letter ([`decoder`]). Yields plain rows
//! and times: the worker pushes them into its dataflow's inputs.
//!
//! # Layout
//! - [`feeding`]: [`Feeding`], how a dataflow times history and new records.
//! - [`decoder`]: [`TableDecoder`], a log record (or a Kafka copy's record)
//!   → [`Decoded`] or [`Rejected`].
//! - [`reader`]: [`PartitionReader`], one worker's partitions of a topic.
//! - [`position`]: where in the log a token's write is, for read-your-writes.

pub mod decoder;
pub mod feeding;
pub mod position;
pub mod reader;

pub use decoder::{Decoded, Rejected, TableDecoder, TableFormat};
pub use feeding::Feeding;
pub use position::written_at;
pub use reader::{read_together, PartitionReader, Progress, Read};
