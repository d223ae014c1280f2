//! End to end: the real `weir` binary, driven only over HTTP, on real
//! RocksDB files; crashes are real (`kill -9`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const JOB: &str = "
CREATE TABLE payments (payment_id BIGINT, customer_id BIGINT, amount DECIMAL(12,2), method TEXT, ts TIMESTAMP)
  WITH (connector = 'log', topic = 'payments', format = 'json');
CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name TEXT)
  WITH (connector = 'log', topic = 'customers', format = 'json');
CREATE MATERIALIZED VIEW by_customer AS
  SELECT customer_id, count(*) AS payments, sum(amount) AS total FROM payments GROUP BY customer_id;
CREATE MATERIALIZED VIEW named AS
  SELECT c.customer_id, c.name, b.total FROM customers c LEFT JOIN by_customer b ON b.customer_id = c.customer_id;
CREATE MATERIALIZED VIEW per_unit AS
  SELECT payment_id, 100 / customer_id AS share FROM payments;
";

fn submit(e: &Engine) {
    let (s, body) = post(e, "/v1/jobs", &json!({"name": "shop", "sql": JOB}).to_string());
    assert_eq!(s, 201, "{body}");
}

#[test]
fn ingest_query_read_your_writes_and_bad_input() {
    let dir = data_dir("main");
    let e = start(&dir, &["--max-body-bytes", "4096"]);
    submit(&e);

    // Ingest: a JSON array, then NDJSON; the token makes the read wait for it.
    let (s, a) = post(
        &e,
        "/v1/topics/payments/events",
        r#"[{"payment_id":1,"customer_id":7,"amount":"10.50","method":"card","ts":"2024-05-01T10:00:00Z"},{"payment_id":2,"customer_id":7,"amount":4.25,"method":"card","ts":1714557600000}]"#,
    );
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["last_offset"].as_u64().unwrap() - a["first_offset"].as_u64().unwrap(),
        1
    );
    let token = a["token"].as_str().unwrap().to_string();
    let (s, v) = get(&e, &format!("/v1/views/by_customer?customer_id=7&after={token}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        rows_of(&v),
        vec![json!({"customer_id": 7, "payments": 2, "total": "14.75"})]
    );
    assert!(v["as_of"].as_u64().unwrap() > 0);

    let (s, a) = post(&e, "/v1/topics/customers/events", "{\"customer_id\":7,\"name\":\"Ada\"}\n{\"customer_id\":8,\"name\":\"Bo\"}\n{\"customer_id\":7,\"name\":\"Ada L.\"}\n");
    assert_eq!(s, 200, "{a}");
    let t2 = a["token"].as_str().unwrap().to_string();
    let (_, v) = get(&e, &format!("/v1/views/named?after={t2}&after={token}"));
    let mut rows = rows_of(&v);
    rows.sort_by_key(|r| r["customer_id"].as_i64());
    assert_eq!(
        rows,
        vec![
            json!({"customer_id": 7, "name": "Ada L.", "total": "14.75"}),
            json!({"customer_id": 8, "name": "Bo", "total": null})
        ]
    );

    // An upsert delete.
    let (_, a) = post(
        &e,
        "/v1/topics/customers/events",
        r#"{"customer_id":8,"__op":"delete"}"#,
    );
    let t3 = a["token"].as_str().unwrap().to_string();
    let (_, v) = get(&e, &format!("/v1/views/named?after={t3}"));
    assert_eq!(rows_of(&v).len(), 1, "{v}");

    // POST /v1/query over one view.
    let (s, v) = post(&e, "/v1/query", &json!({"sql": "SELECT customer_id, total FROM by_customer WHERE payments > 1 ORDER BY total DESC LIMIT 5", "after": [token]}).to_string());
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows_of(&v), vec![json!({"customer_id": 7, "total": "14.75"})]);
    let (s, v) = post(
        &e,
        "/v1/query",
        &json!({"sql": "SELECT * FROM by_customer JOIN named ON true"}).to_string(),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "unsupported");

    // Malformed JSON: 400 with the position, nothing appended.
    let before = get(&e, "/v1/topics").1;
    let (s, v) = post(
        &e,
        "/v1/topics/payments/events",
        "{\"payment_id\":3}\n{\"payment_id\": }\n",
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["line"], 2);
    assert_eq!(get(&e, "/v1/topics").1, before, "a refused batch appends nothing");
    // Oversize body: 413.
    let big = format!("[{}]", vec![r#"{"payment_id":1}"#; 1000].join(","));
    assert_eq!(post(&e, "/v1/topics/payments/events", &big).0, 413);

    // Wrong types and evaluation errors go to the dead letters, with positions.
    let (_, a) = post(
        &e,
        "/v1/topics/payments/events",
        r#"[{"payment_id":"x","customer_id":1,"amount":"1.00"},{"payment_id":4,"customer_id":0,"amount":"2.00","method":"card"}]"#,
    );
    let t4 = a["token"].as_str().unwrap().to_string();
    let (_, v) = get(&e, &format!("/v1/views/by_customer?after={t4}"));
    assert_eq!(rows_of(&v).len(), 2, "the good row counts, the bad one does not: {v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let dlq = loop {
        let (_, d) = get(&e, "/v1/dlq");
        if d["total"].as_u64() >= Some(2) || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let letters = dlq["dead_letters"].as_array().unwrap();
    let decode = letters
        .iter()
        .find(|l| l["source"] == "payments")
        .expect("a decode dead letter");
    assert!(decode["reason"].as_str().unwrap().contains("payment_id"), "{decode}");
    assert_eq!(decode["position"]["topic"], "payments");
    assert!(decode["payload"].as_str().unwrap().contains("\"x\""));
    let eval = letters
        .iter()
        .find(|l| l["source"] == "per_unit")
        .unwrap_or_else(|| panic!("an evaluation dead letter: {dlq}"));
    assert!(eval["reason"].as_str().unwrap().contains("division by zero"), "{eval}");

    // Bad SQL: line and column; unknown names; taken names.
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": "CREATE MATERIALIZED VIEW x AS\nSELECT nope FROM payments;"}).to_string(),
    );
    assert_eq!(s, 400);
    assert_eq!(
        (
            v["error"]["code"].as_str(),
            v["error"]["line"].as_u64(),
            v["error"]["column"].as_u64()
        ),
        (Some("unknown_column"), Some(2), Some(8))
    );
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": "CREATE VIEW x AS SELECT * FROM nowhere"}).to_string(),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_table")));
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": "CREATE VIEW x AS SELEC 1"}).to_string(),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("syntax_error")));
    assert_eq!(
        post(&e, "/v1/jobs", &json!({"name": "shop", "sql": JOB}).to_string()).0,
        409
    );
    assert_eq!(post(&e, "/v1/jobs", "{not json").0, 400);
    assert_eq!(get(&e, "/v1/views/nope").0, 404);
    assert_eq!(get(&e, "/v1/views/by_customer?customer_id=abc").0, 400);
    // A read that cannot be satisfied times out clearly.
    let (s, v) = get(&e, "/v1/views/by_customer?after=payments:0:999999&timeout_ms=200");
    assert_eq!(s, 504, "{v}");
    // A failed job left nothing behind.
    assert_eq!(get(&e, "/v1/jobs").1.as_array().unwrap().len(), 1);
    assert_eq!(get(&e, "/readyz").0, 200);
    let metrics = agent()
        .get(format!("{}/metrics", e.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("weir_source_records_ingested_total"));
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replace_job_while_reading_then_kill_and_restart() {
    let dir = data_dir("restart");
    let e = start(&dir, &[]);
    submit(&e);
    let mut last = String::new();
    for i in 0..50 {
        let body = (0..20)
            .map(|j| json!({"payment_id": i * 20 + j, "customer_id": (i * 20 + j) % 7 + 1, "amount": format!("{}.{:02}", j, i % 100), "method": "card"}).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let (s, a) = post(&e, "/v1/topics/payments/events", &body);
        assert_eq!(s, 200);
        last = a["token"].as_str().unwrap().to_string();
    }
    let (_, before) = get(&e, &format!("/v1/views/by_customer?after={last}"));
    assert_eq!(rows_of(&before).len(), 7);
    // The catalog and the metrics count the view's rows without reading it.
    let (_, views) = get(&e, "/v1/views");
    let listed = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "by_customer")
        .cloned();
    assert_eq!(listed.map(|v| v["rows"].clone()), Some(json!(7)), "{views}");
    let (_, metrics) = get(&e, "/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("weir_view_rows{view=\"by_customer\"} 7"), "{metrics}");
    assert!(
        metrics.contains("weir_view_freshness_lag_ms{view=\"per_unit\"}"),
        "{metrics}"
    );

    // Replace the job while readers read: they never see an empty or
    // failing view, and end up on the new definition. The new version moves
    // the columns, so a filter resolved against the old ones would pick the
    // wrong column if a read straddled the swap.
    let url = e.url.clone();
    let reader = std::thread::spawn(move || {
        let start = Instant::now();
        let mut saw_new = false;
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(20) && !saw_new {
            i += 1;
            let (s, v) = match i % 3 {
                0 => parse(agent().get(format!("{url}/v1/views/by_customer")).call()),
                1 => parse(agent().get(format!("{url}/v1/views/by_customer?customer_id=3")).call()),
                _ => parse(
                    agent()
                        .post(format!("{url}/v1/query"))
                        .send_json(json!({"sql": "SELECT * FROM by_customer WHERE customer_id = 3"})),
                ),
            };
            assert_eq!(s, 200, "{v}");
            let rows = rows_of(&v);
            if i % 3 == 0 {
                assert_eq!(rows.len(), 7, "a reader saw a partial view during the replace: {v}");
            } else {
                assert_eq!(rows.len(), 1, "a filtered read went wrong during the replace: {v}");
                assert_eq!(rows[0]["customer_id"], json!(3), "{v}");
            }
            saw_new = rows[0].get("biggest").is_some();
        }
        saw_new
    });
    let new_sql = JOB.replace(
        "SELECT customer_id, count(*) AS payments, sum(amount) AS total FROM",
        "SELECT max(amount) AS biggest, count(*) AS payments, customer_id, sum(amount) AS total FROM",
    );
    assert_ne!(new_sql, JOB);
    let (s, v) = put(&e, "/v1/jobs/shop", json!({"sql": new_sql}));
    assert_eq!(s, 200, "{v}");
    assert!(reader.join().expect("reader"), "the replaced view became visible");

    // The swap has happened; read the view as the restart must bring it back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let (s, v) = get(&e, &format!("/v1/views/by_customer?after={last}"));
        if (s == 200 && rows_of(&v).len() == 7) || Instant::now() > deadline {
            assert_eq!(s, 200, "{v}");
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // kill -9, restart on the same files: the views come back equal.
    let e = kill_and_restart(e, &dir);
    let (_, after) = get(&e, &format!("/v1/views/by_customer?after={last}"));
    let sorted = |v: &Value| {
        let mut r = rows_of(v);
        r.sort_by_key(|x| x["customer_id"].as_i64());
        r
    };
    assert_eq!(sorted(&before), sorted(&after));
    assert!(
        sorted(&after)[0].get("biggest").is_some(),
        "the replaced job is what was restored"
    );
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn drop_view_and_table_refused_while_depended_on_and_kept_after_restart() {
    let dir = data_dir("drop");
    let e = start(&dir, &[]);
    let job = |name: &str, sql: &str| {
        let (s, v) = post(&e, "/v1/jobs", &json!({"name": name, "sql": sql}).to_string());
        assert_eq!(s, 201, "{v}");
    };
    job(
        "sources",
        "CREATE TABLE payments (payment_id BIGINT, customer_id BIGINT, amount DECIMAL(12,2), method TEXT)
           WITH (connector = 'log', topic = 'payments');
         CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name TEXT)
           WITH (connector = 'log', topic = 'customers');",
    );
    job(
        "reports",
        "-- per customer
         CREATE VIEW by_customer AS SELECT customer_id, sum(amount) AS total FROM payments GROUP BY customer_id;
         CREATE VIEW named AS
           SELECT c.customer_id, c.name, b.total FROM customers c LEFT JOIN by_customer b ON b.customer_id = c.customer_id;
         -- per method; dropped below
         CREATE VIEW per_method AS SELECT method, count(*) AS n FROM payments GROUP BY method;",
    );
    job(
        "alerts",
        "CREATE VIEW vip AS SELECT customer_id FROM named WHERE total > 100;",
    );
    let body = (0..30)
        .map(|i| json!({"payment_id": i, "customer_id": i % 3, "amount": "50.00", "method": "card"}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (s, a) = post(&e, "/v1/topics/payments/events", &body);
    assert_eq!(s, 200, "{a}");
    let token = a["token"].as_str().expect("token").to_string();
    let sql = |text: &str| post(&e, "/v1/sql", &json!({"sql": text}).to_string());

    // Refused, naming what is in the way; nothing changes.
    let (s, v) = sql("DROP VIEW by_customer");
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("view named (job reports)"),
        "{v}"
    );
    let (s, v) = sql("DROP TABLE payments");
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("depends on it"), "{v}");
    let (s, v) = sql("DROP VIEW per_method");
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("view vip (job alerts) reads its view named"),
        "{v}"
    );
    let (s, v) = sql("DROP VIEW nope");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_view")), "{v}");
    assert_eq!(
        (v["error"]["line"].as_u64(), v["error"]["column"].as_u64()),
        (Some(1), Some(11)),
        "{v}"
    );
    let (s, v) = sql("DROP TABLE by_customer");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("wrong_object_type")),
        "{v}"
    );
    let (s, v) = sql("DROP VIEW vip CASCADE");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported")), "{v}");
    let (s, v) = sql("CREATE VIEW x AS SELECT 1");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported")), "{v}");
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "d", "sql": "DROP VIEW vip"}).to_string(),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unsupported")), "{v}");
    assert_eq!(get(&e, "/v1/views/vip").0, 200);

    // A job left with nothing is dropped; then per_method can go, and the
    // rest of its job keeps answering.
    let (s, v) = sql("DROP VIEW IF EXISTS nope; DROP MATERIALIZED VIEW vip");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobs_dropped"], json!(["alerts"]), "{v}");
    assert_eq!(get(&e, "/v1/jobs/alerts").0, 404);
    let (s, v) = sql("DROP VIEW per_method");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobs_rebuilt"], json!(["reports"]), "{v}");
    assert_eq!(get(&e, "/v1/views/per_method").0, 404, "a dropped view is gone at once");
    let (s, v) = get(&e, &format!("/v1/views/by_customer?after={token}"));
    assert_eq!((s, rows_of(&v).len()), (200, 3), "{v}");
    // The name is free again.
    job(
        "methods",
        "CREATE VIEW per_method AS SELECT method, sum(amount) AS total FROM payments GROUP BY method;",
    );

    // kill -9 and restart: what was dropped stays dropped.
    let e = kill_and_restart(e, &dir);
    let (_, jobs) = get(&e, "/v1/jobs");
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["methods", "reports", "sources"]);
    let (_, reports) = get(&e, "/v1/jobs/reports");
    let text = reports["sql"].as_str().unwrap();
    assert!(
        !text.contains("per_method") && text.contains("CREATE VIEW named"),
        "{text}"
    );
    let (s, v) = get(&e, &format!("/v1/views/per_method?after={token}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows_of(&v), vec![json!({"method": "card", "total": "1500.00"})]);
    let (s, v) = get(&e, &format!("/v1/views/by_customer?after={token}"));
    assert_eq!((s, rows_of(&v).len()), (200, 3), "{v}");
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn views_of_different_jobs_agree_at_the_same_as_of() {
    let dir = data_dir("asof");
    let e = start(&dir, &[]);
    for (name, sql) in [
        (
            "sources",
            "CREATE TABLE clicks (user_id BIGINT, page TEXT) WITH (connector = 'log', topic = 'clicks');",
        ),
        ("counts", "CREATE VIEW click_count AS SELECT count(*) AS n FROM clicks;"),
        (
            "pages",
            "CREATE VIEW clicks_per_page AS SELECT page, count(*) AS n FROM clicks GROUP BY page;",
        ),
    ] {
        let (s, v) = post(&e, "/v1/jobs", &json!({"name": name, "sql": sql}).to_string());
        assert_eq!(s, 201, "{v}");
    }
    // Writes go on while the two views, in two jobs with their own
    // dataflows, are read: read at the same as_of they must agree.
    let url = e.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut i = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let body = (0..10)
                .map(|j| json!({"user_id": i * 10 + j, "page": format!("p{}", j % 3)}).to_string())
                .collect::<Vec<_>>()
                .join("\n");
            let (s, _) = parse(agent().post(format!("{url}/v1/topics/clicks/events")).send(body));
            assert_eq!(s, 200);
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut compared = 0;
    let mut nonzero = 0;
    let begun = Instant::now();
    while compared < 40 {
        let (s, a) = get(&e, "/v1/views/click_count");
        assert_eq!(s, 200, "{a}");
        let as_of = a["as_of"].as_u64().unwrap();
        let (s, b) = get(&e, &format!("/v1/views/clicks_per_page?as_of={as_of}"));
        // Nothing can be read from before a view existed: the second job was
        // installed a moment after the first.
        if s == 400 && b["error"]["code"] == "as_of_too_old" && begun.elapsed() < Duration::from_secs(2) {
            continue;
        }
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["as_of"].as_u64(), Some(as_of));
        let total: i64 = rows_of(&b).iter().map(|r| r["n"].as_i64().unwrap()).sum();
        let count = rows_of(&a).first().map_or(0, |r| r["n"].as_i64().unwrap());
        assert_eq!(count, total, "two jobs disagree at as_of {as_of}: {a} vs {b}");
        // The other way round, through POST /v1/query.
        let (s, c) = post(
            &e,
            "/v1/query",
            &json!({"sql": "SELECT n FROM click_count", "as_of": as_of}).to_string(),
        );
        assert_eq!(s, 200, "{c}");
        assert_eq!(c["rows"], a["rows"], "{c} vs {a}");
        compared += 1;
        nonzero += (count > 0) as i32;
        std::thread::sleep(Duration::from_millis(15));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(nonzero > 30, "the views saw the writes");
    // Older than the live views keep: computed beside them, as it was then
    // (nothing had been written). Not yet complete: refused clearly.
    let (s, v) = get(&e, "/v1/views/click_count?as_of=1");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["as_of"], json!(1), "{v}");
    assert_eq!(rows_of(&v).first().map(|r| r["n"].clone()), Some(json!(0)), "{v}");
    let (s, v) = get(&e, "/v1/views/click_count?as_of=99999999999999&timeout_ms=100");
    assert_eq!(s, 504, "{v}");
    let (s, v) = get(&e, "/v1/views/click_count?as_of=soon");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_parameter")), "{v}");
    // Ctrl-C stops the engine cleanly.
    let mut e = e;
    let status = common::interrupt(&mut e, Duration::from_secs(20));
    assert!(status.success(), "weir exited with {status} on SIGINT");
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_of_a_large_log_catches_up_and_matches_it() {
    // More records than the sources read at once, over several topics whose
    // ticks interleave: the replay must neither stall nor lose anything.
    let dir = data_dir("replay");
    let ok = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["generate", "--events", "120000", "--batch", "2000", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("weir generate runs");
    assert!(ok.success());
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop");
    let e = start_with(&dir, &["run", shop], &["--generate-rate", "0", "--read-chunk", "1000"]);
    wait_ready(&e, Duration::from_secs(120));
    // Count OrderPlaced per product straight from the log.
    let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
    let (_, topics) = get(&e, "/v1/topics");
    let orders = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap()
        .clone();
    for (p, end) in orders["end_offsets"].as_array().unwrap().iter().enumerate() {
        let end = end.as_u64().unwrap();
        let mut from = 0;
        while from < end {
            let (s, page) = get(
                &e,
                &format!("/v1/topics/orders/events?partition={p}&from={from}&limit=10000"),
            );
            assert_eq!(s, 200, "{page}");
            for ev in page["events"].as_array().unwrap() {
                if ev["event"]["type"] == "OrderPlaced" {
                    *expected
                        .entry(ev["event"]["product"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
                from = ev["offset"].as_u64().unwrap() + 1;
            }
        }
    }
    let (s, v) = get(&e, "/v1/views/product_sales");
    assert_eq!(s, 200, "{v}");
    let got: std::collections::BTreeMap<String, i64> = rows_of(&v)
        .iter()
        .map(|r| {
            (
                r["product"].as_str().unwrap().to_string(),
                r["orders"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `path` until `done` holds for its rows (or fails after `within`).
const CEP_SOURCES: &str = "
CREATE TABLE pay (customer BIGINT, status TEXT, ts TIMESTAMP)
  WITH (connector = 'log', topic = 'pay', 'watermark.lateness' = '1 s', 'watermark.idle' = '300 ms');
CREATE TABLE orders (order_id BIGINT, kind TEXT, ts TIMESTAMP)
  WITH (connector = 'log', topic = 'orders', 'watermark.idle' = '300 ms');
CREATE TABLE accounts (customer BIGINT PRIMARY KEY, name TEXT) WITH (connector = 'log', topic = 'accounts');
";

fn cep_rules(failures: u32, start: &str) -> String {
    format!(
        "SET 'auto.offset.reset' = '{start}';
CREATE MATERIALIZED VIEW fraud AS SELECT * FROM pay MATCH_RECOGNIZE (
  PARTITION BY customer ORDER BY ts
  MEASURES count(F.*) AS failures, S.ts AS paid_at
  PATTERN (F{{{failures},}} S) WITHIN INTERVAL '10' MINUTE
  DEFINE F AS status = 'failed', S AS status = 'ok'
);
CREATE MATERIALIZED VIEW abandoned AS SELECT * FROM orders MATCH_RECOGNIZE (
  PARTITION BY order_id ORDER BY ts
  MEASURES P.ts AS placed_at, D.ts AS paid_at, TIMED_OUT() AS timed_out
  PATTERN (P X*? D) WITHIN INTERVAL '2' SECOND EMIT TIMEOUTS
  DEFINE P AS kind = 'placed', D AS kind = 'paid'
);"
    )
}

/// Event times as views show them.
fn ts(ms: i64) -> String {
    weir_operators::repr::format_timestamp(ms)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn pattern_rules_match_time_out_swap_and_refuse_bad_rules() {
    let dir = data_dir("cep");
    let e = start(&dir, &[]);
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "sources", "sql": CEP_SOURCES}).to_string(),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "rules", "sql": cep_rules(3, "earliest")}).to_string(),
    );
    assert_eq!(s, 201, "{v}");

    // Customer 7: three failures then a success (fires); customer 8: two
    // failures then a success (does not, yet). Rows arrive slightly out of
    // order, within the lateness.
    let t0 = now_ms();
    let pay = |c: i64, status: &str, dt: i64| json!({"customer": c, "status": status, "ts": t0 + dt}).to_string();
    let batch = [
        pay(7, "failed", 0),
        pay(8, "failed", 5),
        pay(7, "failed", 200),
        pay(7, "failed", 100),
        pay(8, "failed", 150),
        pay(8, "ok", 300),
        pay(7, "ok", 400),
    ]
    .join("\n");
    let (s, a) = post(&e, "/v1/topics/pay/events", &batch);
    assert_eq!(s, 200, "{a}");
    let rows = poll_rows(&e, "/v1/views/fraud", Duration::from_secs(15), |r| !r.is_empty());
    assert_eq!(
        rows,
        vec![json!({"customer": 7, "failures": 3, "paid_at": ts(t0 + 400)})]
    );

    // Order 1 is paid in time (a match); order 2 never is: its time-out
    // row appears once time passes, with no further event for it.
    let order = |id: i64, kind: &str, dt: i64| json!({"order_id": id, "kind": kind, "ts": t0 + dt}).to_string();
    let (s, a) = post(
        &e,
        "/v1/topics/orders/events",
        &[order(1, "placed", 0), order(2, "placed", 10), order(1, "paid", 900)].join("\n"),
    );
    assert_eq!(s, 200, "{a}");
    let mut rows = poll_rows(&e, "/v1/views/abandoned", Duration::from_secs(15), |r| r.len() == 2);
    rows.sort_by_key(|r| r["order_id"].as_i64());
    assert_eq!(
        rows,
        vec![
            json!({"order_id": 1, "placed_at": ts(t0), "paid_at": ts(t0 + 900), "timed_out": false}),
            json!({"order_id": 2, "placed_at": ts(t0 + 10), "paid_at": null, "timed_out": true}),
        ]
    );

    // A row far behind the watermark is late: a dead letter, never silent.
    let (s, _) = post(&e, "/v1/topics/pay/events", &pay(9, "failed", -3_600_000));
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = get(&e, "/v1/dlq");
        let late = d["dead_letters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["source"] == "fraud" && l["reason"].as_str().is_some_and(|r| r.starts_with("late")));
        if late {
            break;
        }
        assert!(Instant::now() < deadline, "no late dead letter: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Hot swap: two failures are enough now; replaying the history finds
    // customer 8 too. Other jobs are untouched.
    let (s, v) = put(&e, "/v1/jobs/rules", json!({"sql": cep_rules(2, "earliest")}));
    assert_eq!(s, 200, "{v}");
    let mut rows = poll_rows(&e, "/v1/views/fraud", Duration::from_secs(15), |r| r.len() == 2);
    rows.sort_by_key(|r| r["customer"].as_i64());
    assert_eq!(
        rows,
        vec![
            json!({"customer": 7, "failures": 3, "paid_at": ts(t0 + 400)}),
            json!({"customer": 8, "failures": 2, "paid_at": ts(t0 + 300)}),
        ]
    );
    // Swapped to start from the latest events, the rules judge new events
    // only.
    let (s, v) = put(&e, "/v1/jobs/rules", json!({"sql": cep_rules(2, "latest")}));
    assert_eq!(s, 200, "{v}");
    let t1 = now_ms() + 1000;
    let late_batch = [
        json!({"customer": 10, "status": "failed", "ts": t1}).to_string(),
        json!({"customer": 10, "status": "failed", "ts": t1 + 1}).to_string(),
        json!({"customer": 10, "status": "ok", "ts": t1 + 2}).to_string(),
    ]
    .join("\n");
    let (s, _) = post(&e, "/v1/topics/pay/events", &late_batch);
    assert_eq!(s, 200);
    // The old version serves reads until the new one has caught up.
    let rows = poll_rows(&e, "/v1/views/fraud", Duration::from_secs(15), |r| {
        !r.is_empty() && r.iter().all(|m| m["customer"] == 10)
    });
    assert_eq!(
        rows,
        vec![json!({"customer": 10, "failures": 2, "paid_at": ts(t1 + 2)})]
    );

    // Bad rules: refused with line and column, nothing installed.
    let bad = |sql: &str| {
        let (s, v) = post(&e, "/v1/jobs", &json!({"name": "bad", "sql": sql}).to_string());
        assert_eq!(s, 400, "{v}");
        (
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
            v["error"]["line"].as_u64().unwrap_or(0),
            v["error"]["column"].as_u64().unwrap_or(0),
        )
    };
    assert_eq!(
        bad("CREATE VIEW b AS SELECT * FROM pay MATCH_RECOGNIZE (\n  PARTITION BY customer ORDER BY ts\n  MEASURES A.ts AS t PATTERN (A B)\n  DEFINE A AS status = 'x', C AS status = 'y')"),
        ("unknown_name".to_string(), 4, 29)
    );
    assert_eq!(
        bad("CREATE VIEW b AS SELECT * FROM accounts MATCH_RECOGNIZE (\n  ORDER BY customer MEASURES A.name AS n PATTERN (A) DEFINE A AS true)"),
        ("invalid_pattern".to_string(), 1, 32)
    );
    assert_eq!(
        bad("CREATE VIEW b AS SELECT * FROM pay MATCH_RECOGNIZE (\n  PARTITION BY customer ORDER BY ts\n  MEASURES A.ts AS t\n  PATTERN (A? B*) DEFINE A AS status = 'x')"),
        ("invalid_pattern".to_string(), 4, 3)
    );
    assert_eq!(get(&e, "/v1/jobs").1.as_array().map(Vec::len), Some(2));
    let metrics = metrics_text(&e);
    assert!(
        metrics.contains("weir_pattern_partial_matches{view=\"fraud\"}"),
        "{metrics}"
    );
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}
