//! Planning errors and where they happened: [`PlanError`], positions in the
//! SQL text ([`Loc`]) and the constructors every planning step shares.

use serde::Serialize;
use sqlparser::ast::{self, Spanned, Statement};

/// A planning error: a stable code for clients, a message for people, and
/// where in the submitted SQL it happened (1-based; 0 when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct PlanError {
    pub code: &'static str,
    pub message: String,
    pub line: u64,
    pub column: u64,
}

impl PlanError {
    pub(super) fn new(code: &'static str, message: impl Into<String>, at: Loc) -> Self {
        PlanError {
            code,
            message: message.into(),
            line: at.0,
            column: at.1,
        }
    }
}

/// A position in the SQL text.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Loc(pub(super) u64, pub(super) u64);

pub(super) fn loc_of(node: &impl Spanned) -> Loc {
    let s = node.span().start;
    Loc(s.line, s.column)
}

/// Where a statement is. sqlparser leaves DROP statements without a span,
/// so those are located at their first name.
pub(super) fn loc_of_statement(stmt: &Statement) -> Loc {
    match stmt {
        Statement::Drop { names, .. } => names.first().map(loc_of).unwrap_or(Loc(1, 1)),
        other => loc_of(other),
    }
}

pub(super) fn loc_ident(id: &ast::Ident) -> Loc {
    Loc(id.span.start.line, id.span.start.column)
}

pub(super) type Result<T> = std::result::Result<T, PlanError>;

pub(super) fn unsupported(what: impl std::fmt::Display, at: Loc) -> PlanError {
    PlanError::new("unsupported", format!("{what} is not supported"), at)
}

pub(super) fn type_err(msg: impl Into<String>, at: Loc) -> PlanError {
    PlanError::new("type_error", msg, at)
}
