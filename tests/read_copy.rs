//! Reads answered from the views' read-optimised copies, on the real
//! binary: every answer equals the same read through the workers (a twin
//! view that opted out with `read_copy = 'off'`) at the same `as_of`, with
//! retractions, on 1 and 3 workers, while ingest, a `PUT` and a `DROP` run;
//! the final views equal a naive recomputation in the test; many clients
//! read their own writes at once.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Each view twice: answered from its copy, and (`_w`) through the workers.
fn job_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner BIGINT, balance BIGINT)
           WITH (connector = 'log', topic = 'accounts');
         CREATE TABLE moves (id BIGINT, owner BIGINT, amount BIGINT)
           WITH (connector = 'log', topic = 'moves');",
    );
    let views = [
        (
            "by_owner",
            "SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner",
        ),
        ("acct", "SELECT id, owner, balance FROM accounts"),
        (
            "move_totals",
            "SELECT owner, sum(amount) AS s, count(*) AS n FROM moves GROUP BY owner",
        ),
        ("moves_by_id", "SELECT id, owner, amount FROM moves"),
    ];
    for (name, q) in views {
        sql.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {q};"));
        sql.push_str(&format!(
            "CREATE MATERIALIZED VIEW {name}_w WITH (read_copy = 'off') AS {q};"
        ));
    }
    sql
}

const VIEWS: &[&str] = &["by_owner", "acct", "move_totals", "moves_by_id"];

fn sorted(v: &Value) -> Vec<String> {
    let mut rows: Vec<String> = rows_of(v).iter().map(Value::to_string).collect();
    rows.sort();
    rows
}

/// Reads `path` from the copy, then its twin through the workers at the
/// answer's `as_of`: they must be equal. `None` when the pair straddled a
/// replace (the twin no longer keeps that time) or the view is gone.
fn read_pair(e: &Engine, view: &str, query: &str) -> Option<(u64, Vec<String>)> {
    let (s, a) = get(e, &format!("/v1/views/{view}?limit=100000{query}"));
    if s == 404 {
        return None;
    }
    assert_eq!(s, 200, "{view}: {a}");
    let as_of = a["as_of"].as_u64().expect("an as_of");
    let (s, b) = get(e, &format!("/v1/views/{view}_w?limit=100000&as_of={as_of}{query}"));
    if s == 400 && b["error"]["code"] == json!("as_of_too_old") || s == 404 {
        return None;
    }
    assert_eq!(s, 200, "{view}_w: {b}");
    assert_eq!(b["as_of"].as_u64(), Some(as_of));
    assert_eq!(
        sorted(&a),
        sorted(&b),
        "{view}{query} as of {as_of}: copy against workers"
    );
    Some((as_of, sorted(&a)))
}

/// The test's own model of the tables: accounts by id, moves in order.
#[derive(Default)]
struct Model {
    accounts: BTreeMap<i64, (i64, i64)>,
    moves: Vec<(i64, i64, i64)>,
}

impl Model {
    fn by_owner(&self) -> Vec<String> {
        let mut m: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (owner, balance) in self.accounts.values() {
            let e = m.entry(*owner).or_default();
            e.0 += 1;
            e.1 += balance;
        }
        let mut rows: Vec<String> = m
            .into_iter()
            .map(|(owner, (n, total))| json!({"owner": owner, "n": n, "total": total}).to_string())
            .collect();
        rows.sort();
        rows
    }
}

fn ingest(e: &Engine, topic: &str, events: &[Value]) -> String {
    let body: Vec<String> = events.iter().map(Value::to_string).collect();
    let (s, a) = post(e, &format!("/v1/topics/{topic}/events"), &body.join("\n"));
    assert_eq!(s, 200, "{a}");
    a["token"].as_str().expect("a token").to_string()
}

fn copies_equal_workers_while_things_change(workers: &str) {
    let dir = data_dir(&format!("read-copy-{workers}"));
    let e = Arc::new(start(&dir, &["--workers", workers]));
    let sql = job_sql();
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "bank", "sql": sql}).to_string());
    assert_eq!(s, 201, "{body}");
    let (s, body) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "extra", "sql": "CREATE MATERIALIZED VIEW move_count AS SELECT count(*) AS n FROM moves;"})
            .to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    // Readers comparing the two paths while the writer below changes things.
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (e, stop, pairs) = (Arc::clone(&e), Arc::clone(&stop), Arc::clone(&pairs));
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + r);
                while !stop.load(Ordering::SeqCst) {
                    let view = VIEWS[rng.random_range(0..VIEWS.len())];
                    let query = match (view, rng.random_range(0..3)) {
                        ("acct", 0) => format!("&id={}", rng.random_range(0..40)),
                        ("by_owner", 0) => format!("&owner={}", rng.random_range(0..6)),
                        _ => String::new(),
                    };
                    if read_pair(&e, view, &query).is_some() {
                        pairs.fetch_add(1, Ordering::Relaxed);
                    }
                    // The other job's view is whole or gone, never empty.
                    let (s, v) = get(&e, "/v1/views/move_count");
                    if s == 200 {
                        assert_eq!(rows_of(&v).len(), 1, "{v}");
                    } else {
                        assert_eq!(s, 404, "{v}");
                    }
                }
            })
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model = Model::default();
    let mut tokens = Vec::new();
    for round in 0..40 {
        let mut events = Vec::new();
        for _ in 0..15 {
            let id = rng.random_range(0..40);
            if model.accounts.contains_key(&id) && rng.random_range(0..3) == 0 {
                model.accounts.remove(&id);
                events.push(json!({"id": id, "__op": "delete"}));
            } else {
                let (owner, balance) = (rng.random_range(0..6), rng.random_range(-50..500));
                model.accounts.insert(id, (owner, balance));
                events.push(json!({"id": id, "owner": owner, "balance": balance}));
            }
        }
        tokens = vec![ingest(&e, "accounts", &events)];
        let moves: Vec<Value> = (0..10)
            .map(|i| {
                let m = (round * 10 + i, rng.random_range(0..6), rng.random_range(1..100));
                model.moves.push(m);
                json!({"id": m.0, "owner": m.1, "amount": m.2})
            })
            .collect();
        tokens.push(ingest(&e, "moves", &moves));
        // Room for the readers to compare reads between writes.
        std::thread::sleep(std::time::Duration::from_millis(30));
        if round == 15 {
            // Replace the job (same views, one more): readers move over to
            // the new version once it has caught up, never seeing it partial.
            let (s, body) = put(
                &e,
                "/v1/jobs/bank",
                json!({"sql": format!("{sql} CREATE MATERIALIZED VIEW owners AS SELECT DISTINCT owner FROM accounts;")}),
            );
            assert!(s == 200 || s == 202, "{s} {body}");
        }
        if round == 25 {
            let (s, body) = parse(agent().delete(format!("{}/v1/jobs/extra", e.url)).call());
            assert!(s == 200 || s == 204, "{s} {body}");
        }
    }
    // After every write: each view equals the model, on both paths.
    let after: String = tokens.iter().map(|t| format!("&after={t}")).collect();
    let (_, rows) = read_pair(&e, "by_owner", &after).expect("read");
    assert_eq!(rows, model.by_owner());
    let (_, rows) = read_pair(&e, "moves_by_id", &after).expect("read");
    assert_eq!(rows.len(), model.moves.len());
    let (_, rows) = read_pair(&e, "acct", &after).expect("read");
    assert_eq!(rows.len(), model.accounts.len());
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().expect("a reader failed");
    }
    assert!(pairs.load(Ordering::Relaxed) > 20, "too few reads compared");
    // The reads above were answered from the copies.
    let metrics = metrics_text(&e);
    assert!(
        metrics.contains("weir_peeks_total{outcome=\"ok\",path=\"index\",via=\"copy\",view=\"acct\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("via=\"workers\",view=\"acct_w\""), "{metrics}");
}

#[test]
fn copies_equal_workers_on_one_worker() {
    copies_equal_workers_while_things_change("1");
}

#[test]
fn copies_equal_workers_on_three_workers() {
    copies_equal_workers_while_things_change("3");
}

#[test]
fn many_clients_read_their_own_writes_from_the_copy() {
    let dir = data_dir("read-copy-ryw");
    let e = Arc::new(start(&dir, &["--workers", "2"]));
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "bank", "sql": job_sql()}).to_string());
    assert_eq!(s, 201, "{body}");
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = 1_000_000 + c * 1000 + i;
                    let token = ingest(&e, "moves", &[json!({"id": id, "owner": c, "amount": i + 1})]);
                    let (s, v) = get(&e, &format!("/v1/views/moves_by_id?id={id}&after={token}"));
                    assert_eq!(s, 200, "{v}");
                    assert_eq!(
                        rows_of(&v),
                        vec![json!({"id": id, "owner": c, "amount": i + 1})],
                        "client {c} wrote {id} and must read it"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let (s, v) = get(&e, "/v1/views/moves_by_id?limit=100000");
    assert_eq!(s, 200);
    assert_eq!(rows_of(&v).len(), 200);
    // A view option that is not known, or a bad value, is refused where it is.
    let bad = "CREATE TABLE t (a BIGINT) WITH (connector = 'log');
               CREATE MATERIALIZED VIEW v WITH (read_copy = 'maybe') AS SELECT a FROM t;";
    let (s, v) = post(&e, "/v1/jobs", &json!({"name": "bad", "sql": bad}).to_string());
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("'read_copy' 'maybe'"), "{v}");
}
