//! `Command::Peek`: a worker's part of a read, answered once its trace is
//! complete through the read time.

use weir_queries::pending::try_answer;
use weir_queries::PeekCommand;

use super::WorkerState;

/// Answers the peek if it can; keeps it pending otherwise. Answered at
/// once when possible: a Drop that follows in the same round must not
/// strand a read that was already complete.
pub fn receive(state: &mut WorkerState, p: PeekCommand) {
    if !answer(state, &p) {
        state.pending_peeks.push(p);
    }
}

/// Answers the pending peeks that can be answered now.
pub fn answer_pending(state: &mut WorkerState) {
    let mut pending = std::mem::take(&mut state.pending_peeks);
    pending.retain(|p| !answer(state, p));
    state.pending_peeks = pending;
}

fn answer(state: &mut WorkerState, p: &PeekCommand) -> bool {
    let trace = state
        .dataflows
        .get_mut(&p.df)
        .and_then(|d| d.view_mut(&p.view))
        .map(|v| &mut v.trace);
    match try_answer(trace, p) {
        Some(reply) => {
            state.shared.peeks.reply(p.id, reply);
            true
        }
        None => false,
    }
}
