//! A pattern compiled to the instructions of a Pike VM.

use super::pattern::{Pattern, VarId};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CepError {
    #[error("the pattern expands to more than {MAX_INSTRUCTIONS} steps: use smaller repetition bounds")]
    TooLarge,
}

/// Bounded repetitions are unrolled; this caps the unrolled size.
pub const MAX_INSTRUCTIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inst {
    /// Consume one row if the variable's condition holds.
    Var(VarId),
    /// Continue at both, preferring the first.
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Program {
    pub(super) insts: Vec<Inst>,
}

impl Program {
    /// # Contract
    /// The caller has refused patterns that can match zero rows and loops
    /// whose body can: every cycle of the program consumes a row.
    pub fn compile(pattern: &Pattern) -> Result<Program, CepError> {
        let mut insts = Vec::new();
        emit(pattern, &mut insts)?;
        insts.push(Inst::Match);
        Ok(Program { insts })
    }
}

fn push(insts: &mut Vec<Inst>, inst: Inst) -> Result<usize, CepError> {
    if insts.len() >= MAX_INSTRUCTIONS {
        return Err(CepError::TooLarge);
    }
    insts.push(inst);
    Ok(insts.len() - 1)
}

fn emit(p: &Pattern, insts: &mut Vec<Inst>) -> Result<(), CepError> {
    match p {
        Pattern::Var(v) => {
            push(insts, Inst::Var(*v))?;
        }
        Pattern::Concat(ps) => {
            for p in ps {
                emit(p, insts)?;
            }
        }
        Pattern::Alt(ps) => {
            let mut exits = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                if i + 1 == ps.len() {
                    emit(p, insts)?;
                } else {
                    let split = push(insts, Inst::Split(0, 0))?;
                    emit(p, insts)?;
                    exits.push(push(insts, Inst::Jmp(0))?);
                    insts[split] = Inst::Split(split + 1, insts.len());
                }
            }
            let end = insts.len();
            for j in exits {
                insts[j] = Inst::Jmp(end);
            }
        }
        Pattern::Repeat {
            inner,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                emit(inner, insts)?;
            }
            let order = |take: usize, leave: usize| {
                if *greedy {
                    Inst::Split(take, leave)
                } else {
                    Inst::Split(leave, take)
                }
            };
            match max {
                Some(max) => {
                    // Optional copies, each reachable only through the one
                    // before it: (X (X (X)?)?)?
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(push(insts, Inst::Split(0, 0))?);
                        emit(inner, insts)?;
                    }
                    let end = insts.len();
                    for s in splits {
                        insts[s] = order(s + 1, end);
                    }
                }
                None => {
                    let top = push(insts, Inst::Split(0, 0))?;
                    emit(inner, insts)?;
                    push(insts, Inst::Jmp(top))?;
                    let end = insts.len();
                    insts[top] = order(top + 1, end);
                }
            }
        }
    }
    Ok(())
}
