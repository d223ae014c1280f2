mod cep_harness;
use cep_harness::{run, End, Event};
use weir_operators::repr::Datum;

fn ev(tick: u64, p: i64, ts: i64, v: i64) -> Event {
    Event { tick, table: "ev".into(), row: vec![Datum::Int(p), Datum::Timestamp(ts), Datum::Int(v)] }
}

#[test]
fn smoke() {
    let script = "CREATE TABLE ev (p BIGINT, ts TIMESTAMP, v BIGINT) WITH (connector='log', topic='ev');
CREATE MATERIALIZED VIEW m AS SELECT * FROM ev MATCH_RECOGNIZE (
  PARTITION BY p ORDER BY ts
  MEASURES FIRST(A.v) AS a, LAST(B.v) AS b, count(B.*) AS nb, MATCH_NUMBER() AS n, CLASSIFIER() AS c
  PATTERN (A B+ C) WITHIN INTERVAL '10' SECOND
  DEFINE A AS v > 5, B AS B.v < PREV(B.v), C AS C.v > PREV(C.v)
);";
    let vals = [10, 8, 6, 4, 9, 7, 3, 8];
    let events: Vec<Event> = vals.iter().enumerate().map(|(i, v)| ev(i as u64 + 1, 1, 1000 * i as i64, *v)).collect();
    for workers in [1, 2] {
        let out = run(script, &events, workers, End::Close);
        println!("{workers}: {:?}\n{:?}", out.views, out.dead_letters);
    }
}
