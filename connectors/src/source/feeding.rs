//! At which engine time a dataflow feeds each record it reads.

use serde::{Deserialize, Serialize};
use weir_operators::repr::Tick;

/// History is replayed at times rounded up to this many milliseconds.
const HISTORY_GRANULE_MS: Tick = 100;

/// How a dataflow installed at `since` times the records it reads.
///
/// A record appended at or after `since` is fed at its own tick. History
/// (appended before `since`) is fed at coarser times, never later than
/// `since`: a replay passes through few distinct times, and from `since` on
/// every dataflow agrees on every record's time. History is never fed
/// across a pin: a time a sink wrote through before a restart stays a time
/// of the replayed views, so the sink resumes exactly after it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Feeding {
    pub since: Tick,
    /// Sorted.
    pub pins: Vec<Tick>,
}

impl Feeding {
    pub fn time(&self, tick: Tick) -> Tick {
        if tick >= self.since {
            return tick;
        }
        let coarse = (tick / HISTORY_GRANULE_MS + 1)
            .saturating_mul(HISTORY_GRANULE_MS)
            .min(self.since);
        // The first pin at or after the tick, if it comes before `coarse`.
        let i = self.pins.partition_point(|&p| p < tick);
        match self.pins.get(i) {
            Some(&p) if p < coarse => p,
            _ => coarse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_coarse_new_records_exact_and_pins_kept() {
        let f = Feeding {
            since: 1_000,
            pins: vec![250],
        };
        assert_eq!(f.time(1_000), 1_000);
        assert_eq!(f.time(1_234), 1_234);
        assert_eq!(f.time(101), 200);
        assert_eq!(f.time(201), 250);
        assert_eq!(f.time(251), 300);
        assert_eq!(f.time(990), 1_000);
    }
}
