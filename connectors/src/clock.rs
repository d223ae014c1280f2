//! Engine time: milliseconds, the wall clock never going back within the
//! process, or a clock the caller moves (bounded runs in tests and
//! benchmarks feed events at chosen ticks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in milliseconds, never going back within the process.
pub fn wall_clock() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    LAST.fetch_max(wall, Ordering::SeqCst).max(wall)
}

/// The clock a log stamps its appends with and seals its topics by.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    Wall,
    /// Moved by its owner with [`ManualClock::set`]; never goes back.
    Manual(ManualClock),
}

impl Clock {
    pub fn now(&self) -> u64 {
        match self {
            Clock::Wall => wall_clock(),
            Clock::Manual(m) => m.now(),
        }
    }
}

/// A clock that moves only when told to.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(start: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start)))
    }

    /// Moves the clock to `t` (never back).
    pub fn set(&self, t: u64) {
        self.0.fetch_max(t, Ordering::SeqCst);
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
