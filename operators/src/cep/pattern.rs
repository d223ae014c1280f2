//! The row pattern of a rule (`PATTERN (…)` and `AFTER MATCH SKIP`), as the
//! planner builds it.

use serde::{Deserialize, Serialize};

/// A pattern variable: its index in the rule's list of variables.
pub type VarId = u16;

/// A row pattern (the `PATTERN (…)` clause).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    Var(VarId),
    Concat(Vec<Pattern>),
    /// Alternatives, preferred left to right.
    Alt(Vec<Pattern>),
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        max: Option<u32>,
        /// Greedy quantifiers prefer more iterations, reluctant ones fewer.
        greedy: bool,
    },
}

impl Pattern {
    /// Whether the pattern can match zero rows.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) => ps.iter().all(Pattern::nullable),
            Pattern::Alt(ps) => ps.iter().any(Pattern::nullable),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.nullable(),
        }
    }

    /// Whether some quantifier has no upper bound.
    pub fn unbounded(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) | Pattern::Alt(ps) => ps.iter().any(Pattern::unbounded),
            Pattern::Repeat { inner, max, .. } => max.is_none() || inner.unbounded(),
        }
    }

    /// Whether some unbounded repetition's body can match zero rows: such a
    /// loop could iterate without consuming rows.
    pub fn has_nullable_loop(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(ps) | Pattern::Alt(ps) => ps.iter().any(Pattern::has_nullable_loop),
            Pattern::Repeat { inner, max, .. } => (max.is_none() && inner.nullable()) || inner.has_nullable_loop(),
        }
    }
}

/// Where matching resumes after a match (`AFTER MATCH SKIP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skip {
    PastLastRow,
    ToNextRow,
    ToFirst(VarId),
    ToLast(VarId),
}
