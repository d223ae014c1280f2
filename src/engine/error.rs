//! Why a control-plane request failed; each variant maps to an HTTP status.

use weir_connectors::LogError;
use weir_dataflows::catalog::CatalogError;
use weir_dataflows::sql::PlanError;
use weir_queries::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Plan(PlanError),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A read failed (the read side says whose fault).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The log could not take an append through no fault of the request
    /// (the disk): a retry may help.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<CatalogError> for EngineError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Plan(p) => EngineError::Plan(p),
            CatalogError::NotFound(m) => EngineError::NotFound(m),
            CatalogError::Conflict(m) => EngineError::Conflict(m),
            CatalogError::Internal(m) => EngineError::Internal(m),
        }
    }
}

impl From<LogError> for EngineError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Store(_) => EngineError::Unavailable(e.to_string()),
            other => EngineError::BadRequest {
                code: "append_failed",
                message: other.to_string(),
            },
        }
    }
}
