//! The differential test: random inputs, with upserts and deletes (so
//! retractions), appended as JSON to the engine's log and read by its own
//! sources and worker loop in process (`weir::harness`), with 1 and 4
//! workers; after every batch every view, read at that batch's time, is
//! compared with SQLite running the same SELECT over the same rows.
//!
//! Where SQLite differs from PostgreSQL the harness normalises, and says why:
//! - SQLite has no DECIMAL: money is stored as REAL there, so numbers are
//!   compared after rounding to 4 decimal places (sums of at most a few
//!   hundred 2-decimal values stay exact at that precision).
//! - SQLite has no BOOLEAN: weir's booleans are compared as 0/1.
//! - SQLite rounds REALs (46.05 is 46.0499…), PostgreSQL rounds exact
//!   numerics: `round` is checked on integers here and on decimals in the
//!   unit tests.
//! - SQLite's LIKE is case-insensitive by default: the harness turns on
//!   `case_sensitive_like`, PostgreSQL's behaviour.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use weir::harness::Harness;
use weir_connectors::decode::encode_json;
use weir_dataflows::sql::{plan_job, CatalogLookup, ObjectInfo};
use weir_operators::repr::{Datum, Row};

struct Empty;
impl CatalogLookup for Empty {
    fn lookup(&self, _: &str) -> Option<ObjectInfo> {
        None
    }
}

const TABLES: &str = "
CREATE TABLE t1 (k BIGINT, a BIGINT, b TEXT, c DECIMAL(10,2)) WITH (connector='log', topic='t1');
CREATE TABLE u1 (id BIGINT PRIMARY KEY, k BIGINT, name TEXT) WITH (connector='log', topic='u1');
";

const SQLITE_TABLES: &str = "
CREATE TABLE t1 (k INTEGER, a INTEGER, b TEXT, c REAL);
CREATE TABLE u1 (id INTEGER PRIMARY KEY, k INTEGER, name TEXT);
PRAGMA case_sensitive_like = ON;
";

/// (view name, SELECT) — every SQL feature of the engine core.
const VIEWS: &[(&str, &str)] = &[
    ("agg", "SELECT k, count(*) AS n, count(a) AS na, sum(a) AS s, min(b) AS mn, max(a) AS mx, avg(c) AS av, count(DISTINCT b) AS nb FROM t1 GROUP BY k"),
    ("agg_acc", "SELECT k, count(*) AS n, sum(c) AS total, avg(a) AS av FROM t1 GROUP BY k"),
    ("filtered", "SELECT k, sum(c) AS total, count(a) AS na FROM t1 WHERE a > 3 AND b LIKE 'x%' GROUP BY k HAVING count(*) > 1"),
    ("minmax_append", "SELECT k, min(a) AS mn, max(b) AS mx, count(*) AS n, sum(c) AS s, max(c) AS mc FROM t1 GROUP BY k"),
    ("minmax_global", "SELECT min(b) AS mn, max(a) AS mx FROM t1"),
    ("minmax_upsert", "SELECT k, min(name) AS mn, max(id) AS mx FROM u1 GROUP BY k"),
    ("global_empty", "SELECT count(*) AS n, sum(a) AS s, max(b) AS m FROM t1 WHERE a > 100"),
    ("global_upsert", "SELECT count(*) AS n, sum(k) AS s FROM u1"),
    ("inner_join", "SELECT t1.k, t1.a, u1.name FROM t1 JOIN u1 ON t1.k = u1.k AND t1.a < u1.id"),
    ("left_join", "SELECT u1.id, u1.name, t1.a FROM u1 LEFT JOIN t1 ON u1.k = t1.k AND t1.a > 5"),
    ("distinct_rows", "SELECT DISTINCT k, b FROM t1"),
    ("unioned", "SELECT k FROM t1 WHERE a < 3 UNION SELECT k FROM u1"),
    ("union_all", "SELECT k, b AS label FROM t1 WHERE a < 2 UNION ALL SELECT k, name FROM u1"),
    ("topn_append", "SELECT k, a, b, rn FROM (SELECT k, a, b, ROW_NUMBER() OVER (PARTITION BY k ORDER BY a DESC NULLS LAST, b ASC NULLS LAST) AS rn FROM t1) x WHERE rn <= 2"),
    ("top1_append", "SELECT k, a, b FROM (SELECT k, a, b, ROW_NUMBER() OVER (PARTITION BY k ORDER BY a DESC NULLS LAST, b ASC NULLS LAST) AS rn FROM t1) x WHERE rn = 1"),
    ("topn_upsert", "SELECT id, k, name FROM (SELECT id, k, name, ROW_NUMBER() OVER (PARTITION BY k ORDER BY id) AS rn FROM u1) x WHERE rn = 1"),
    ("exprs", "SELECT k, a * 2 + 1 AS e1, a / 3 AS e2, a % 4 AS e3, CASE WHEN a > 5 THEN 'big' WHEN a > 2 THEN 'mid' ELSE 'small' END AS e4, COALESCE(b, 'none') AS e5, NULLIF(a, 3) AS e6, lower(b) || upper(b) AS e7, length(b) AS e8, substr(b, 2, 2) AS e9, abs(a - 5) AS e10, a BETWEEN 2 AND 6 AS e11, a IN (1, 3, 5) AS e12, b IS NULL AS e13, NOT (a > 4) AS e14, round(a, 1) AS e15, CAST(a AS TEXT) AS e16, c * 2 - 1 AS e17, CASE k WHEN 1 THEN 'one' ELSE 'other' END AS e18, a <> k OR b IS NOT NULL AS e19 FROM t1"),
    ("view_on_view", "SELECT count(*) AS groups, sum(n) AS total FROM agg"),
    ("sub_join", "SELECT g.k, g.n, u1.name FROM (SELECT k, count(*) AS n FROM t1 GROUP BY k) g JOIN u1 ON g.k = u1.k"),
    ("dim_join", "SELECT g.k, g.n, u1.name FROM (SELECT k, count(*) AS n FROM t1 GROUP BY k) g LEFT JOIN u1 ON u1.id = g.k"),
    ("multi_join", "SELECT x.k, x.a, y.a AS a2, u1.name FROM t1 x JOIN t1 y ON x.k = y.k AND x.a < y.a JOIN u1 ON u1.k = x.k"),
    // Reads narrowed to the columns used (`prune`): a residual and a filter
    // over columns the output drops, and a union whose columns the outer
    // query reads only in part.
    ("pruned_left_join", "SELECT x.b, u1.name FROM t1 x LEFT JOIN u1 ON u1.k = x.k AND x.c > 10 WHERE x.a IS NOT NULL"),
    ("pruned_union", "SELECT b FROM (SELECT k, a * 2 AS a2, b FROM t1 UNION ALL SELECT k, id, name FROM u1) s WHERE k > 1"),
];

/// Keys the planner must derive (the view is arranged and looked up by
/// them); every other view is keyed by the whole row. Uniqueness is checked
/// on SQLite's answer, not on ours.
const EXPECTED_KEYS: &[(&str, &[&str])] = &[
    ("agg", &["k"]),
    ("agg_acc", &["k"]),
    ("minmax_append", &["k"]),
    ("filtered", &["k"]),
    ("topn_append", &["k", "rn"]),
    ("topn_upsert", &["k"]),
    ("sub_join", &[]),
    ("dim_join", &["k"]),
    ("inner_join", &[]),
];

/// One batch of changes, the same for the engine and SQLite.
enum Op {
    Insert(Row),
    Upsert(i64, Option<(i64, String)>),
}

fn random_ops(rng: &mut StdRng) -> Vec<Op> {
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(1..6) {
        let k = Datum::Int(rng.random_range(0..5));
        let a = if rng.random_bool(0.1) {
            Datum::Null
        } else {
            Datum::Int(rng.random_range(0..10))
        };
        let b = match rng.random_range(0..5) {
            0 => Datum::Null,
            i => Datum::Text(["x1", "x2", "xy", "ab"][i - 1].into()),
        };
        let c = if rng.random_bool(0.1) {
            Datum::Null
        } else {
            Datum::Decimal(rust_decimal::Decimal::new(rng.random_range(0..10_000), 2))
        };
        ops.push(Op::Insert(vec![k, a, b, c]));
    }
    for _ in 0..rng.random_range(0..4) {
        let id = rng.random_range(0..8);
        if rng.random_bool(0.25) {
            ops.push(Op::Upsert(id, None));
        } else {
            let name = ["ann", "bob", "cy", "dee"][rng.random_range(0..4)].to_string();
            ops.push(Op::Upsert(id, Some((rng.random_range(0..5), name))));
        }
    }
    ops
}

/// A number rounded to 6 places first, so that an exact decimal and a
/// binary float of the same value print alike at 4 places.
fn num(x: f64) -> String {
    format!("{:.4}", (x * 1e6).round() / 1e6)
}

/// A value in the form both sides agree on (see the module doc).
fn norm_datum(d: &Datum) -> String {
    match d {
        Datum::Null => "NULL".into(),
        Datum::Bool(b) => num(*b as i64 as f64),
        Datum::Int(i) => num(*i as f64),
        Datum::Float(f) => num(f.get()),
        Datum::Decimal(x) => num(x.to_string().parse::<f64>().unwrap_or(f64::NAN)),
        Datum::Text(s) => format!("'{s}'"),
        Datum::Timestamp(t) => t.to_string(),
    }
}

fn norm_sqlite(v: rusqlite::types::ValueRef) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => num(i as f64),
        ValueRef::Real(f) => num(f),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        ValueRef::Blob(_) => "BLOB".into(),
    }
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("SQLite cannot run {sql}: {e}"));
    let n = stmt.column_count();
    let mut rows: Vec<Vec<String>> = stmt
        .query_map([], |r| Ok((0..n).map(|i| norm_sqlite(r.get_ref_unwrap(i))).collect()))
        .and_then(|it| it.collect())
        .unwrap_or_else(|e| panic!("SQLite failed on {sql}: {e}"));
    rows.sort();
    rows
}

fn sqlite_value(d: &Datum) -> String {
    match d {
        Datum::Null => "NULL".into(),
        Datum::Text(s) => format!("'{s}'"),
        Datum::Int(i) => i.to_string(),
        Datum::Decimal(x) => x.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Runs `batches` random batches against SQLite. With `restore = Some(w)`,
/// the job is snapshotted after a random batch, a few more batches are
/// appended, and the engine is restarted on `w` workers from the snapshot
/// (those batches are read again from the log); it goes on from there.
fn run(workers: usize, seed: u64, batches: usize, restore: Option<usize>) {
    let mut script = TABLES.to_string();
    for (name, select) in VIEWS {
        script.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {select};\n"));
    }
    let plan = plan_job(&script, &Empty).unwrap_or_else(|e| panic!("planning failed: {e}"));
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for v in &plan.views {
        let names = v
            .key
            .iter()
            .flatten()
            .map(|&i| v.schema.columns[i].name.clone())
            .collect();
        keys.insert(v.name.clone(), names);
    }
    // min/max over the append-only table take the monotonic plan (state per
    // group), over the upsert table the general one.
    let plan_of = |name: &str| format!("{:?}", plan.views.iter().find(|v| v.name == name).map(|v| &v.plan));
    assert!(plan_of("minmax_append").contains("monotonic: true"));
    assert!(plan_of("minmax_upsert").contains("monotonic: false"));
    for (view, expected) in EXPECTED_KEYS {
        assert_eq!(keys[*view], *expected, "key of view {view}");
    }
    let t1 = &plan.tables[0].schema;
    // The engine in process: the real log, sources (JSON decoding, upsert
    // deletes) and worker loop; batches are appended at ticks 1, 2, …
    let mut h = Harness::start(workers).expect("the engine starts");
    h.submit("differential", &script).expect("the job installs");
    let conn = rusqlite::Connection::open_in_memory().expect("SQLite opens in memory");
    conn.execute_batch(SQLITE_TABLES).expect("SQLite tables");
    for (name, select) in VIEWS {
        conn.execute_batch(&format!("CREATE VIEW {name} AS {select};"))
            .expect("SQLite view");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let snapshot_after = rng.random_range(batches as u64 / 4..batches as u64 / 2);
    let restart_after = snapshot_after + rng.random_range(0..4);
    let mut tick = 0;
    for batch in 0..batches as u64 {
        tick += 1;
        let (mut inserts, mut upserts) = (Vec::new(), Vec::new());
        for op in random_ops(&mut rng) {
            match op {
                Op::Insert(row) => {
                    inserts.push(serde_json::to_vec(&encode_json(&row, t1)).expect("a row encodes"));
                    let vals: Vec<String> = row.iter().map(sqlite_value).collect();
                    conn.execute_batch(&format!("INSERT INTO t1 VALUES ({});", vals.join(",")))
                        .expect("insert");
                }
                Op::Upsert(id, value) => match value {
                    Some((k, n)) => {
                        upserts.push(json!({"id": id, "k": k, "name": n}).to_string().into_bytes());
                        conn.execute_batch(&format!("INSERT OR REPLACE INTO u1 VALUES ({id}, {k}, '{n}');"))
                            .expect("upsert");
                    }
                    None => {
                        upserts.push(json!({"id": id, "__op": "delete"}).to_string().into_bytes());
                        conn.execute_batch(&format!("DELETE FROM u1 WHERE id = {id};"))
                            .expect("delete");
                    }
                },
            }
        }
        for (topic, events) in [("t1", &inserts), ("u1", &upserts)] {
            if !events.is_empty() {
                h.append(tick, topic, None, events).expect("the log appends");
            }
        }
        h.advance_to(tick + 1);
        for (name, _) in VIEWS {
            let mut ours: Vec<Vec<String>> = h
                .read(name, tick)
                .expect("the view reads")
                .iter()
                .map(|row| row.iter().map(norm_datum).collect())
                .collect();
            ours.sort();
            let theirs = sqlite_rows(&conn, &format!("SELECT * FROM {name}"));
            assert_eq!(
                ours, theirs,
                "view {name} differs from SQLite after batch {batch} (workers {workers}, seed {seed})"
            );
            let key = &keys[*name];
            if !key.is_empty() {
                let cols = key.join(", ");
                let dups = sqlite_rows(
                    &conn,
                    &format!("SELECT {cols} FROM {name} GROUP BY {cols} HAVING count(*) > 1"),
                );
                assert!(dups.is_empty(), "key ({cols}) of view {name} is not unique: {dups:?}");
            }
        }
        let failed = h.dead_letters();
        assert!(
            failed.is_empty(),
            "no record or row of these views should fail, on any worker: {failed:?}"
        );
        if let Some(after) = restore {
            if batch == snapshot_after {
                tick = h.snapshot("differential").expect("the job is snapshotted") + 1;
            }
            if batch == restart_after {
                h = h.restart(after).expect("the engine restarts");
                let restored = h.restored("differential").expect("the restore works");
                let Some((_, entries)) = restored else {
                    panic!("the job was not restored from its snapshot (seed {seed})")
                };
                assert!(entries > 0, "the snapshot holds the job's state");
                tick = tick.max(h.now()) + 1;
            }
        }
    }
}

#[test]
fn views_equal_sqlite_one_worker() {
    for seed in 0..3 {
        run(1, seed, 40, None);
    }
}

#[test]
fn views_equal_sqlite_four_workers() {
    for seed in 10..12 {
        run(4, seed, 40, None);
    }
}

/// Snapshot at a random batch, restore on more workers, then on fewer:
/// every view, at every later batch's time, still equals SQLite.
#[test]
fn views_equal_sqlite_across_restores_one_to_three_workers() {
    for seed in 20..22 {
        run(1, seed, 30, Some(3));
    }
}

#[test]
fn views_equal_sqlite_across_restores_three_to_one_worker() {
    for seed in 30..32 {
        run(3, seed, 30, Some(1));
    }
}
