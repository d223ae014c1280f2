//! Why a control-plane request failed, by whose rules: the catalog's (the
//! user's SQL and names, other jobs' reads), the read side's, the request's
//! own shape, the disk, or the engine. The API maps each to a status.

use weir_connectors::{ErrorKind, LogError};
use weir_dataflows::catalog::CatalogError;
use weir_queries::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Refused by the catalog (see [`CatalogError`]).
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// A read failed (see [`ReadError`]).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The request is malformed: a stable code and a message.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The log could not take an append through no fault of the request
    /// (the disk): a retry may help.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    pub fn no_job(name: &str) -> EngineError {
        EngineError::Catalog(CatalogError::NotFound(format!("no job named {name}")))
    }
}

/// An append's failure by whose fault it is: the request's (400), the
/// disk's while a retry may help (503), else the engine's (500).
impl From<LogError> for EngineError {
    fn from(e: LogError) -> Self {
        match (e.kind(), e.retryable()) {
            (ErrorKind::User, _) => EngineError::BadRequest {
                code: "append_failed",
                message: e.to_string(),
            },
            (_, true) => EngineError::Unavailable(e.to_string()),
            (_, false) => EngineError::Internal(e.to_string()),
        }
    }
}
