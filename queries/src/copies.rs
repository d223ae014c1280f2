//! The read-optimised copies of every installed view
//! ([`weir_operators::read_copy`]), by dataflow and view, each with the
//! notification its readers wait on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use weir_dataflows::catalog::DataflowId;
use weir_operators::read_copy::ReadCopy;
use weir_operators::repr::Tick;

/// One view's copy, and what wakes its readers when a shard publishes.
#[derive(Clone)]
pub struct CopyHandle {
    pub copy: Arc<ReadCopy>,
    pub published: Arc<Notify>,
}

/// Every view's copy (see the module doc).
pub struct ReadCopies {
    workers: usize,
    window: Tick,
    /// By dataflow, then view (looked up without allocating a key).
    copies: Mutex<HashMap<DataflowId, HashMap<String, CopyHandle>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReadCopies {
    /// Copies with one shard per worker that keep `window` ticks of
    /// history for reads at an earlier time.
    pub fn new(workers: usize, window: Tick) -> ReadCopies {
        ReadCopies {
            workers,
            window,
            copies: Mutex::default(),
        }
    }

    /// The view's copy, made by the first worker to ask (every worker asks
    /// while installing the dataflow, installed at `installed`: see
    /// [`ReadCopy::new`]).
    pub fn get_or_create(&self, df: DataflowId, view: &str, installed: Tick) -> CopyHandle {
        let mut copies = lock(&self.copies);
        copies
            .entry(df)
            .or_default()
            .entry(view.to_string())
            .or_insert_with(|| {
                let published = Arc::new(Notify::new());
                let n = Arc::clone(&published);
                CopyHandle {
                    copy: ReadCopy::new(
                        self.workers,
                        self.window,
                        installed,
                        Box::new(move || n.notify_waiters()),
                    ),
                    published,
                }
            })
            .clone()
    }

    /// The view's copy, if it has one.
    pub fn get(&self, df: DataflowId, view: &str) -> Option<CopyHandle> {
        lock(&self.copies).get(&df).and_then(|v| v.get(view)).cloned()
    }

    /// Forgets a dropped dataflow's copies and retires them (readers
    /// holding one keep it until they finish).
    pub fn forget(&self, df: DataflowId) {
        if let Some(views) = lock(&self.copies).remove(&df) {
            for h in views.values() {
                h.copy.retire();
            }
        }
    }
}
