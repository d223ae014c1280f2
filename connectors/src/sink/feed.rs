//! The changes a sink writes, out of the messages of its dataflow's
//! versions ([`SinkMsg`]): those of the active version, after where the
//! sink resumes; a replacing version's, kept until it takes over.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use weir_operators::repr::{Diff, Row, Tick};

use super::{SinkMsg, SinkStatus};

/// One time's changes, to be written in time order.
pub type TimeChanges = (Tick, Vec<(Row, Diff)>);

pub struct Feed {
    status: Arc<SinkStatus>,
    /// The version whose changes are written.
    active: u64,
    /// Changes of versions not yet active, by version and time.
    next: BTreeMap<u64, BTreeMap<Tick, Vec<(Row, Diff)>>>,
    /// Times up to this are written already.
    pub resume_after: Option<Tick>,
}

impl Feed {
    /// The feed of a sink whose changes `version` sends; its frontier is
    /// kept in `status`.
    pub fn new(version: u64, status: Arc<SinkStatus>) -> Feed {
        Feed {
            status,
            active: version,
            next: BTreeMap::new(),
            resume_after: None,
        }
    }

    /// Takes in one message: changes of the active version join `batch`.
    pub fn accept(&mut self, msg: SinkMsg, batch: &mut Vec<TimeChanges>) {
        match msg {
            SinkMsg::Changes {
                version,
                as_of,
                changes,
            } => {
                if version == self.active {
                    if self.resume_after.is_none_or(|r| as_of > r) {
                        batch.push((as_of, changes));
                    }
                } else if version > self.active && as_of >= self.status.frontier.load(Ordering::Relaxed) {
                    // Kept for the swap (see `Activate`); what comes before
                    // the active version's frontier would be cut there.
                    self.next.entry(version).or_default().insert(as_of, changes);
                }
            }
            SinkMsg::Frontier { version, frontier } => {
                if version == self.active {
                    self.status.frontier.store(frontier, Ordering::SeqCst);
                }
            }
            SinkMsg::ResumeAfter { version, at } => {
                if version == self.active {
                    self.resume_after = self.resume_after.max(Some(at));
                }
            }
            SinkMsg::Activate { version } => {
                // Every change of the old version before its frontier is in
                // `batch` or written; the new one takes over from there.
                let cut = self.status.frontier.load(Ordering::Relaxed);
                self.active = version;
                self.resume_after = Some(cut.saturating_sub(1)).max(self.resume_after);
                self.next.retain(|v, _| *v >= version);
                if let Some(times) = self.next.remove(&version) {
                    for (t, changes) in times {
                        if t >= cut {
                            batch.push((t, changes));
                        }
                    }
                }
            }
        }
    }
}
