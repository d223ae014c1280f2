//! Event time and the watermark of a rule's input.

use serde::{Deserialize, Serialize};

use crate::repr::{Datum, Row, Tick};

/// A source's watermark settings (the table's `WITH` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// How far behind the largest event time seen rows may still arrive.
    pub lateness_ms: i64,
    /// After this long without a row (in append time), event time moves on
    /// with the clock; `None`: never.
    pub idle_ms: Option<i64>,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            lateness_ms: 0,
            idle_ms: Some(1000),
        }
    }
}

/// The watermark of one rule's input. Every worker sees every tick's
/// largest event time, so all compute the same watermark.
pub(super) struct Clock {
    settings: Watermark,
    max_ts: Option<i64>,
    last_arrival: Tick,
    /// The watermark reached so far: it never goes back.
    floor: i64,
}

/// What a snapshot keeps of a clock (the same on every worker: every worker
/// sees every tick's largest event time).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ClockSnapshot {
    max_ts: Option<i64>,
    last_arrival: Tick,
    floor: i64,
}

impl Clock {
    pub(super) fn snapshot(&self) -> ClockSnapshot {
        ClockSnapshot {
            max_ts: self.max_ts,
            last_arrival: self.last_arrival,
            floor: self.floor,
        }
    }

    pub(super) fn restore(&mut self, s: ClockSnapshot) {
        self.max_ts = s.max_ts;
        self.last_arrival = s.last_arrival;
        self.floor = s.floor;
    }

    /// A clock that has seen no rows yet.
    pub(super) fn new(settings: Watermark) -> Clock {
        Clock {
            settings,
            max_ts: None,
            last_arrival: 0,
            floor: i64::MIN,
        }
    }

    pub(super) fn at(&self, now: Tick) -> i64 {
        let Some(max) = self.max_ts else { return self.floor };
        let mut w = self.floor.max(max.saturating_sub(self.settings.lateness_ms));
        if let Some(idle) = self.settings.idle_ms {
            let gap = i64::try_from(now.saturating_sub(self.last_arrival)).unwrap_or(i64::MAX);
            let moved = gap.saturating_sub(idle);
            if moved > 0 {
                w = w.max(max.saturating_sub(self.settings.lateness_ms).saturating_add(moved));
            }
        }
        w
    }

    /// The first tick at which the watermark reaches `w` with no further
    /// rows (the idle clock), if it ever does.
    pub(super) fn tick_reaching(&self, w: i64) -> Option<Tick> {
        let base = self.max_ts?.saturating_sub(self.settings.lateness_ms);
        let idle = self.settings.idle_ms?;
        if w <= self.floor.max(base) {
            return Some(self.last_arrival);
        }
        let extra = u64::try_from(w.saturating_sub(base)).ok()?;
        Some(
            self.last_arrival
                .saturating_add(u64::try_from(idle).unwrap_or(u64::MAX))
                .saturating_add(extra),
        )
    }

    pub(super) fn observe(&mut self, now: Tick, max_ts: i64) {
        self.floor = self.at(now);
        self.max_ts = Some(self.max_ts.map_or(max_ts, |m| m.max(max_ts)));
        self.last_arrival = now;
    }
}

/// The event time of `row` in column `col` (TIMESTAMP, or BIGINT
/// milliseconds); `None` when it is NULL.
pub(super) fn event_time(row: &Row, col: usize) -> Option<i64> {
    match row.get(col) {
        Some(Datum::Timestamp(t)) | Some(Datum::Int(t)) => Some(*t),
        _ => None,
    }
}
