//! A hand-checked pattern through the real dataflows, with 1 and 2
//! workers: the quickest signal that pattern rules work at all.

mod cep_harness;

use cep_harness::{run, End, Event};
use weir_operators::repr::Datum;

fn ev(tick: u64, p: i64, ts: i64, v: i64) -> Event {
    Event {
        tick,
        table: "ev".into(),
        row: vec![Datum::Int(p), Datum::Timestamp(ts), Datum::Int(v)],
    }
}

#[test]
fn falling_run_then_a_rise() {
    let script = "CREATE TABLE ev (p BIGINT, ts TIMESTAMP, v BIGINT) WITH (connector='log', topic='ev');
CREATE MATERIALIZED VIEW m AS SELECT * FROM ev MATCH_RECOGNIZE (
  PARTITION BY p ORDER BY ts
  MEASURES FIRST(A.v) AS a, LAST(B.v) AS b, count(B.*) AS nb, MATCH_NUMBER() AS n, CLASSIFIER() AS c
  PATTERN (A B+ C) WITHIN INTERVAL '10' SECOND
  DEFINE A AS v > 5, B AS B.v < PREV(B.v), C AS C.v > PREV(C.v)
);";
    // 10 8 6 4 | 9 — then 7 3 | 8: two matches, the second after skipping
    // past the first.
    let vals = [10, 8, 6, 4, 9, 7, 3, 8];
    let events: Vec<Event> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| ev(i as u64 + 1, 1, 1000 * i as i64, *v))
        .collect();
    let row = |a: i64, b: i64, nb: i64, n: i64| {
        vec![
            Datum::Int(1),
            Datum::Int(a),
            Datum::Int(b),
            Datum::Int(nb),
            Datum::Int(n),
            Datum::Text("C".into()),
        ]
    };
    for workers in [1, 2] {
        let out = run(script, &events, workers, End::Close);
        assert_eq!(
            out.views["m"],
            vec![row(7, 3, 1, 2), row(10, 4, 3, 1)],
            "{workers} workers"
        );
        assert!(out.dead_letters.is_empty());
    }
}

/// The textbook V shape without `WITHIN` is accepted, and its partial
/// matches are bounded by `'pattern.max_rows'`: a falling run longer than
/// the cap drops its attempts into the dead letters (one per start row that
/// reached the cap), and matching goes on.
#[test]
fn an_unbounded_pattern_without_within_is_capped_by_rows() {
    let script = "CREATE TABLE ev (p BIGINT, ts TIMESTAMP, v BIGINT) WITH (connector='log', topic='ev');
CREATE MATERIALIZED VIEW m WITH ('pattern.max_rows' = '5') AS SELECT * FROM ev MATCH_RECOGNIZE (
  PARTITION BY p ORDER BY ts
  MEASURES FIRST(A.v) AS a, LAST(B.v) AS b, count(B.*) AS nb
  PATTERN (A B+ C)
  DEFINE B AS B.v < PREV(B.v), C AS C.v > PREV(C.v)
);";
    // A short V (10 8 9) matches; then a fall of 8 rows (100 … 30) and a
    // rise at the end, further than 5 rows from the fall's first rows.
    let vals = [10, 8, 9, 100, 90, 80, 70, 60, 50, 40, 30, 35];
    let events: Vec<Event> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| ev(i as u64 + 1, 1, 1000 * i as i64, *v))
        .collect();
    let row = |a: i64, b: i64, nb: i64| vec![Datum::Int(1), Datum::Int(a), Datum::Int(b), Datum::Int(nb)];
    for workers in [1, 2] {
        let out = run(script, &events, workers, End::Close);
        // An attempt spans at most 5 rows: those from 100, 90, 80 and 70
        // reach 5 rows without a rise and are dropped; the one from 60 sees
        // 50 40 30 and the rise to 35 within its 5 rows.
        assert_eq!(out.views["m"], vec![row(10, 8, 1), row(60, 30, 3)], "{workers} workers");
        assert_eq!(out.dead_letters.len(), 4, "{workers} workers: {:?}", out.dead_letters);
        assert!(
            out.dead_letters
                .iter()
                .all(|d| format!("{d:?}").contains("pattern.max_rows")),
            "{:?}",
            out.dead_letters
        );
    }
}
