//! Schedule tables (`CREATE TABLE t (tick BIGINT, at TIMESTAMP) WITH
//! (connector = 'schedule', interval = '1 minute')`): the engine appends a
//! tick at the start of each interval, so views, rules and actions can act
//! on time.

use weir_operators::repr::{Column, SqlType};

use super::error::{Loc, PlanError, Result};
use super::extensions::parse_duration_ms;
use crate::plan::ScheduleSource;

/// The shortest interval: ticks are durable appends, one per interval.
const MIN_INTERVAL_MS: u64 = 100;

/// The schedule of table `table` with `columns`; `interval` as given.
pub(super) fn source(
    table: &str,
    columns: &[Column],
    interval: Option<(String, Loc)>,
    at: Loc,
) -> Result<ScheduleSource> {
    let (text, interval_at) = interval.ok_or_else(|| {
        PlanError::new(
            "invalid_option",
            "a schedule table needs interval = '1 minute' (or another duration)",
            at,
        )
    })?;
    let interval_ms = parse_duration_ms(&text)
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms >= MIN_INTERVAL_MS)
        .ok_or_else(|| {
            PlanError::new(
                "invalid_option",
                format!(
                    "'interval' must be a duration of at least {MIN_INTERVAL_MS} ms, such as '1 minute', not '{text}'"
                ),
                interval_at,
            )
        })?;
    for c in columns {
        let fits = match c.name.as_str() {
            "tick" | "interval_ms" => matches!(c.ty, SqlType::BigInt),
            "at" | "ts" => matches!(c.ty, SqlType::Timestamp),
            _ => false,
        };
        if !fits {
            return Err(PlanError::new(
                "invalid_table",
                format!(
                    "column \"{}\" of schedule table {table}: a schedule's columns are tick BIGINT (the interval's number since the Unix epoch), at TIMESTAMP or ts TIMESTAMP (when the interval began), interval_ms BIGINT",
                    c.name
                ),
                at,
            ));
        }
    }
    let safe: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .take(120)
        .collect();
    Ok(ScheduleSource {
        interval_ms,
        topic: format!("__schedule.{safe}.{interval_ms}"),
    })
}
