//! Capturing an operator's own state as of a time, for snapshots.
//!
//! Operators that keep state outside arrangements (upsert, monotonic top-k,
//! the pattern operator) cannot be read "as of" a past time: their state is
//! only ever the current one. So a snapshot is requested for a time `T`
//! that the operator has not processed past yet, and the operator writes its
//! state down when it is about to move past `T`: after the last time at or
//! before `T`, before the first time after it.
//!
//! # Contract
//! - The operator calls [`Capture::before`] before it processes any time
//!   `t`, and [`Capture::passed`] when its input frontier moves to `f`
//!   without data (every time before `f` is then processed).
//! - A request for a time the operator has already processed past is
//!   answered with an error (the snapshot is then abandoned, and taken
//!   again later).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::repr::{Diff, Row, Tick};

/// The encoded entries of a captured state, or why it could not be captured.
pub type Captured = Result<Vec<Vec<u8>>, String>;

#[derive(Default)]
struct Inner {
    /// Requested time → its capture, once taken.
    requests: BTreeMap<Tick, Option<Captured>>,
    /// Every time before this one has been processed.
    processed_before: Tick,
}

/// A shared handle between an operator and the snapshot that reads it.
#[derive(Clone, Default)]
pub struct Capture(Rc<RefCell<Inner>>);

impl Capture {
    /// Asks for the state as of `at`.
    pub fn request(&self, at: Tick) {
        let mut inner = self.0.borrow_mut();
        let missed = inner.processed_before > at;
        inner
            .requests
            .entry(at)
            .or_insert_with(|| missed.then(|| Err(format!("the operator had already processed past time {at}"))));
    }

    /// Takes the capture for `at`: `None` while the operator has not passed
    /// `at` yet.
    pub fn take(&self, at: Tick) -> Option<Captured> {
        let mut inner = self.0.borrow_mut();
        if inner.requests.get(&at).is_some_and(Option::is_some) {
            return inner.requests.remove(&at).flatten();
        }
        None
    }

    /// Whether the state as of `at` has been captured (or refused).
    pub fn captured(&self, at: Tick) -> bool {
        self.0.borrow().requests.get(&at).is_some_and(Option::is_some)
    }

    /// Forgets a request (its snapshot was abandoned).
    pub fn cancel(&self, at: Tick) {
        self.0.borrow_mut().requests.remove(&at);
    }

    fn capture_below(&self, t: Tick, write: &mut dyn FnMut() -> Captured) {
        let mut inner = self.0.borrow_mut();
        let mut written: Option<Captured> = None;
        for (_, slot) in inner.requests.range_mut(..t).filter(|(_, s)| s.is_none()) {
            let c = written.get_or_insert_with(&mut *write);
            *slot = Some(c.clone());
        }
        inner.processed_before = inner.processed_before.max(t);
    }

    /// The operator is about to process time `t`: every request before `t`
    /// is captured now, by `write`.
    pub fn before(&self, t: Tick, write: &mut dyn FnMut() -> Captured) {
        self.capture_below(t, write);
    }

    /// The operator's input frontier moved to `frontier` (`None`: closed):
    /// every time before it is processed, so requests before it are
    /// captured.
    pub fn passed(&self, frontier: Option<Tick>, write: &mut dyn FnMut() -> Captured) {
        self.capture_below(frontier.unwrap_or(Tick::MAX), write);
    }

    /// Whether a request waits for a time before `t` (the operator then
    /// stops at it to capture, see the pattern operator).
    pub fn first_request_before(&self, t: Tick) -> Option<Tick> {
        let inner = self.0.borrow();
        inner.requests.range(..t).find(|(_, s)| s.is_none()).map(|(at, _)| *at)
    }
}

/// Encodes rows as snapshot entries `(row, (), count)`, the form a
/// collection cut restores from.
pub fn encode_rows<'a>(rows: impl Iterator<Item = (&'a Row, Diff)>) -> Captured {
    rows.map(|(r, d)| bincode::serialize(&(r, (), d)).map_err(|e| format!("cannot encode a row: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_once_between_the_last_time_at_or_before_and_the_first_after() {
        let c = Capture::default();
        c.request(10);
        let mut state = 1;
        let mut write = || Ok(vec![vec![state as u8]]);
        c.before(5, &mut write);
        assert_eq!(c.take(10), None, "time 5 is not past 10");
        state = 2;
        let mut write = || Ok(vec![vec![state as u8]]);
        c.before(10, &mut write);
        assert_eq!(c.take(10), None, "10 itself is still to be processed");
        c.before(11, &mut write);
        assert_eq!(c.take(10), Some(Ok(vec![vec![2]])));
        assert_eq!(c.take(10), None, "taken once");
        c.request(3);
        assert!(matches!(c.take(3), Some(Err(_))), "a time already passed is refused");
        c.request(20);
        c.passed(Some(21), &mut || Ok(vec![]));
        assert_eq!(c.take(20), Some(Ok(vec![])));
    }
}
