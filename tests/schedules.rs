//! Schedule tables end to end: a tick per interval, durably, none skipped
//! or doubled across a `kill -9` and restart (the missed intervals are
//! appended when the engine is back).

mod common;

use std::time::Duration;

use common::{data_dir, kill_and_restart, poll_rows, post, start};
use serde_json::json;

#[test]
fn ticks_survive_a_kill_without_a_gap_or_a_double() {
    let dir = data_dir("schedule");
    let e = start(&dir, &[]);
    let sql = "CREATE TABLE every_tick (tick BIGINT, at TIMESTAMP) WITH (connector = 'schedule', interval = '300 ms');
CREATE MATERIALIZED VIEW ticks AS SELECT tick, count(*) AS n FROM every_tick GROUP BY tick;";
    let (s, v) = post(&e, "/v1/jobs", &json!({"name": "clock", "sql": sql}).to_string());
    assert_eq!(s, 201, "{v}");
    poll_rows(&e, "/v1/views/ticks", Duration::from_secs(20), |rows| rows.len() >= 4);
    let e = kill_and_restart(e, &dir);
    // Down for a while: the intervals missed are appended on restart.
    let rows = poll_rows(&e, "/v1/views/ticks", Duration::from_secs(30), |rows| rows.len() >= 12);
    let mut ticks: Vec<i64> = rows.iter().filter_map(|r| r["tick"].as_i64()).collect();
    ticks.sort_unstable();
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    assert_eq!(ticks, (first..=last).collect::<Vec<_>>(), "no interval skipped");
    assert!(rows.iter().all(|r| r["n"] == 1), "none doubled: {rows:?}");
    // The schedule's topic is the engine's own.
    let (s, _) = post(&e, "/v1/topics/__schedule.every_tick.300/events", r#"{"tick": 1}"#);
    assert_eq!(s, 400);
}

#[test]
fn bad_schedules_are_refused_with_a_place() {
    let dir = data_dir("schedule-bad");
    let e = start(&dir, &[]);
    for (sql, needle) in [
        (
            "CREATE TABLE t (tick BIGINT) WITH (connector = 'schedule');",
            "needs interval",
        ),
        (
            "CREATE TABLE t (tick BIGINT) WITH (connector = 'schedule', interval = '10 ms');",
            "at least 100 ms",
        ),
        (
            "CREATE TABLE t (name TEXT) WITH (connector = 'schedule', interval = '1 s');",
            "a schedule's columns",
        ),
        (
            "CREATE TABLE t (tick BIGINT) WITH (connector = 'log', interval = '1 s');",
            "for connector 'schedule'",
        ),
    ] {
        let (s, v) = post(&e, "/v1/jobs", &json!({"name": "bad", "sql": sql}).to_string());
        assert_eq!(s, 400, "{sql}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{sql}: {v}");
        assert!(v["error"]["line"].is_number(), "{v}");
    }
}
