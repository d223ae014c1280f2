//! Why a read failed. Each variant says whose fault it is: the reader's
//! request (`Plan`, `BadRequest`, `NotFound`), time (`Timeout`, retry with
//! more), a concurrent change (`Replaced`, retry), or the engine
//! (`Internal`).

use weir_dataflows::sql::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The query does not plan (line and column inside).
    #[error("{0}")]
    Plan(PlanError),
    /// The request is malformed: a stable code and a message.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The view did not get far enough in time; a larger timeout may help.
    #[error("{0}")]
    Timeout(String),
    /// The view was replaced by a new version while being read; the read
    /// is planned again against the new version.
    #[error("view {0} was replaced while being read")]
    Replaced(String),
    /// The dataflow workers have stopped.
    #[error("{0}")]
    Internal(String),
}
