//! Pending peeks: a read of one view version at one time, sent to every
//! worker through the command stream, and each worker's part of the answer
//! sent back to the reader. The worker side answers once its trace is
//! complete through the read time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use weir_dataflows::catalog::DataflowId;
use weir_dataflows::render::ViewTrace;
use weir_operators::repr::{Diff, Row, Tick};

use crate::peek::{peek, trace_upper};

/// A read every worker answers with its part of one view version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeekCommand {
    pub id: u64,
    pub df: DataflowId,
    pub view: String,
    pub as_of: Tick,
    /// Only the rows under this key of the view's index.
    pub key: Option<Row>,
}

/// Why a worker could not answer: the version read is gone (a replace
/// swapped it out after the read time was chosen).
#[derive(Clone, Debug, thiserror::Error)]
pub enum PeekError {
    #[error("view {0} is no longer installed")]
    Gone(String),
}

/// One worker's part of a peek's answer.
pub type PeekReply = Result<Vec<(Row, Diff)>, PeekError>;

/// The reply channels of outstanding peeks, by peek id.
#[derive(Default)]
pub struct PendingPeeks {
    next: AtomicU64,
    replies: Mutex<HashMap<u64, UnboundedSender<PeekReply>>>,
}

impl PendingPeeks {
    /// A new peek id and the channel its replies arrive on, until
    /// [`PendingPeeks::close`].
    pub fn open(&self) -> (u64, UnboundedReceiver<PeekReply>) {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = unbounded_channel();
        self.lock().insert(id, tx);
        (id, rx)
    }

    pub fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Sends a worker's reply; a reader that gave up takes nothing.
    pub fn reply(&self, id: u64, reply: PeekReply) {
        if let Some(tx) = self.lock().get(&id) {
            let _ = tx.send(reply);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnboundedSender<PeekReply>>> {
        self.replies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's answer to a peek of its part of the view (`trace`: `None`
/// when the version is not installed on it); `None` while the trace is not
/// complete through the read time: try again after the next step. A trace
/// whose sources ended (its upper is empty) is complete for all times.
pub fn try_answer(trace: Option<&mut ViewTrace>, p: &PeekCommand) -> Option<PeekReply> {
    let Some(trace) = trace else {
        return Some(Err(PeekError::Gone(p.view.clone())));
    };
    if trace_upper(trace).is_some_and(|u| u <= p.as_of) {
        return None;
    }
    let mut rows = Vec::new();
    peek(trace, p.as_of, p.key.as_ref(), &mut rows);
    Some(Ok(rows))
}
