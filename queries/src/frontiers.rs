//! The read policy: every installed view's progress, shared by the workers
//! (who publish it and compact as it allows) and the readers (who choose
//! and hold their read time against it). Runtime-free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use weir_dataflows::catalog::DataflowId;
use weir_operators::repr::Tick;

use crate::progress::ViewProgress;

type ViewKey = (DataflowId, String);

/// Per (dataflow, view): each worker's trace upper and the held read times.
pub struct Frontiers {
    workers: usize,
    views: Mutex<HashMap<ViewKey, ViewProgress>>,
}

/// The views' progress under the lock, for a worker publishing all of its
/// views at once.
pub struct Publishing<'a>(MutexGuard<'a, HashMap<ViewKey, ViewProgress>>);

impl Publishing<'_> {
    pub fn get_mut(&mut self, df: DataflowId, view: &str) -> Option<&mut ViewProgress> {
        self.0.get_mut(&(df, view.to_string()))
    }
}

/// Locks a mutex, recovering from poisoning: the data behind it stays
/// consistent per operation, so a panicked holder leaves nothing half done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Frontiers {
    pub fn new(workers: usize) -> Arc<Frontiers> {
        Arc::new(Frontiers {
            workers,
            views: Mutex::new(HashMap::new()),
        })
    }

    /// Starts tracking the views of a dataflow just installed (idempotent:
    /// every worker registers them).
    pub fn register<'a>(&self, df: DataflowId, views: impl IntoIterator<Item = &'a str>) {
        let mut all = lock(&self.views);
        for v in views {
            all.entry((df, v.to_string()))
                .or_insert_with(|| ViewProgress::new(self.workers));
        }
    }

    /// Forgets a dropped dataflow's views.
    pub fn forget(&self, df: DataflowId) {
        lock(&self.views).retain(|(d, _), _| *d != df);
    }

    pub fn publishing(&self) -> Publishing<'_> {
        Publishing(lock(&self.views))
    }

    /// The view's rows, over all workers, as far as they have computed it.
    pub fn view_rows(&self, df: DataflowId, view: &str) -> Option<i64> {
        Some(lock(&self.views).get(&(df, view.to_string()))?.rows.iter().sum())
    }

    /// The view's partial matches in progress, over all workers, when it
    /// has pattern rules.
    pub fn view_partial_matches(&self, df: DataflowId, view: &str) -> Option<i64> {
        let views = lock(&self.views);
        Some(
            views
                .get(&(df, view.to_string()))?
                .partial_matches
                .as_ref()?
                .iter()
                .sum(),
        )
    }

    /// The time through which a view is complete on every worker.
    pub fn complete_through(&self, df: DataflowId, view: &str) -> Option<Tick> {
        lock(&self.views).get(&(df, view.to_string()))?.complete()
    }

    /// True when every view of `df` is complete through `through`.
    pub fn all_complete(&self, df: DataflowId, through: Tick) -> bool {
        lock(&self.views)
            .iter()
            .filter(|((d, _), _)| *d == df)
            .all(|(_, progress)| progress.complete().is_some_and(|t| t >= through))
    }

    /// Chooses the time to read a view at: `exact` if given, else the latest
    /// complete one; in both cases at least `required`. `Ok(None)` while the
    /// view is not complete that far yet; `Err(since)` when `exact` is before
    /// the history the view still keeps. The time is held (its history kept)
    /// until the returned hold is dropped.
    pub fn hold_read(
        self: &Arc<Self>,
        df: DataflowId,
        view: &str,
        required: Tick,
        exact: Option<Tick>,
    ) -> Result<Option<ReadHold>, Tick> {
        let key = (df, view.to_string());
        let mut views = lock(&self.views);
        let Some(progress) = views.get_mut(&key) else {
            return Ok(None);
        };
        if let Some(t) = exact {
            if t < progress.since {
                return Err(progress.since);
            }
        }
        let Some(complete) = progress.complete() else {
            return Ok(None);
        };
        let at = exact.unwrap_or(complete);
        if at > complete || at < required {
            return Ok(None);
        }
        *progress.holds.entry(at).or_default() += 1;
        Ok(Some(ReadHold {
            frontiers: Arc::clone(self),
            key,
            at,
        }))
    }
}

/// A reader's hold on one view's history at one time (see
/// [`Frontiers::hold_read`]).
pub struct ReadHold {
    frontiers: Arc<Frontiers>,
    key: ViewKey,
    pub at: Tick,
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        let mut views = lock(&self.frontiers.views);
        if let Some(holds) = views.get_mut(&self.key).map(|p| &mut p.holds) {
            if let Some(n) = holds.get_mut(&self.at) {
                *n -= 1;
                if *n == 0 {
                    holds.remove(&self.at);
                }
            }
        }
    }
}
