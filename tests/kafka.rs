//! Kafka in and out, end to end: the real `weir` binary against a real
//! Kafka-protocol broker (tansu), fed by `weir produce` and by kafka-python
//! (a client sharing no code with weir), checked against SQLite.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{python_consume, python_group_offsets, python_produce, Broker};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// A payment (append-only) and account (upsert) workload.
struct Workload {
    /// (customer, amount in cents, kind)
    payments: Vec<(i64, i64, &'static str)>,
    /// (account id, Some((owner, balance)) or None for a delete), in order.
    accounts: Vec<(i64, Option<(String, i64)>)>,
}

fn workload(seed: u64, n: usize) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let payments = (0..n)
        .map(|_| {
            let kind = if rng.random_bool(0.8) { "auth" } else { "refund" };
            (rng.random_range(0..40), rng.random_range(1..100_000), kind)
        })
        .collect();
    let accounts = (0..n / 2)
        .map(|_| {
            let id = rng.random_range(0..100);
            if rng.random_bool(0.15) {
                (id, None)
            } else {
                let owner = format!("o{}", rng.random_range(0..7));
                (id, Some((owner, rng.random_range(-500..5000))))
            }
        })
        .collect();
    Workload { payments, accounts }
}

fn payment_json(&(customer, cents, kind): &(i64, i64, &str)) -> String {
    json!({"customer": customer, "amount": format!("{}.{:02}", cents / 100, cents % 100), "kind": kind}).to_string()
}

fn job(brokers: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE pay (customer BIGINT, amount DECIMAL(12,2), kind TEXT)
           WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'payments', format = 'json'{extra});
         CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT, balance BIGINT)
           WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'accounts', format = 'json');
         CREATE MATERIALIZED VIEW by_customer AS
           SELECT customer, count(*) AS n, sum(amount) AS total FROM pay WHERE kind = 'auth' GROUP BY customer;
         CREATE MATERIALIZED VIEW by_owner AS
           SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner;"
    )
}

/// The views from scratch, by SQLite, over the same events: (customer →
/// (n, cents)), (owner → (n, total)).
type Expected = (BTreeMap<i64, (i64, i64)>, BTreeMap<String, (i64, i64)>);

fn reference(payments: &[(i64, i64, &str)], accounts: &[(i64, Option<(String, i64)>)]) -> Expected {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE pay (customer INTEGER, cents INTEGER, kind TEXT);
         CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER);",
    )
    .unwrap();
    for (c, cents, kind) in payments {
        db.execute("INSERT INTO pay VALUES (?1, ?2, ?3)", rusqlite::params![c, cents, kind])
            .unwrap();
    }
    for (id, row) in accounts {
        match row {
            Some((owner, balance)) => db
                .execute(
                    "INSERT OR REPLACE INTO accounts VALUES (?1, ?2, ?3)",
                    rusqlite::params![id, owner, balance],
                )
                .unwrap(),
            None => db.execute("DELETE FROM accounts WHERE id = ?1", [id]).unwrap(),
        };
    }
    let mut by_customer = BTreeMap::new();
    let mut q = db
        .prepare("SELECT customer, count(*), sum(cents) FROM pay WHERE kind = 'auth' GROUP BY customer")
        .unwrap();
    for r in q
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .unwrap()
    {
        let (c, n, s) = r.unwrap();
        by_customer.insert(c, (n, s));
    }
    let mut by_owner = BTreeMap::new();
    let mut q = db
        .prepare("SELECT owner, count(*), sum(balance) FROM accounts GROUP BY owner")
        .unwrap();
    for r in q
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .unwrap()
    {
        let (o, n, s) = r.unwrap();
        by_owner.insert(o, (n, s));
    }
    (by_customer, by_owner)
}

fn cents(v: &Value) -> i64 {
    let s = v.as_str().expect("a decimal as a string");
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().unwrap() * 100 + sign * format!("{frac:0<2}")[..2].parse::<i64>().unwrap()
}

/// `&after=T` for each token: a read waits until the view reflects them all
/// (`weir produce` prints one token per partition it wrote to).
fn after_query(after: &[String]) -> String {
    after.iter().map(|t| format!("&after={t}")).collect()
}

/// The views as weir has them, read with `after` tokens.
fn actual(e: &Engine, after: &[String]) -> Expected {
    let (s, v) = get(
        e,
        &format!("/v1/views/by_customer?timeout_ms=60000{}", after_query(after)),
    );
    assert_eq!(s, 200, "{v}");
    let by_customer = rows_of(&v)
        .iter()
        .map(|r| {
            (
                r["customer"].as_i64().unwrap(),
                (r["n"].as_i64().unwrap(), cents(&r["total"])),
            )
        })
        .collect();
    let (s, v) = get(e, &format!("/v1/views/by_owner?timeout_ms=60000{}", after_query(after)));
    assert_eq!(s, 200, "{v}");
    let by_owner = rows_of(&v)
        .iter()
        .map(|r| {
            (
                r["owner"].as_str().unwrap().to_string(),
                (r["n"].as_i64().unwrap(), r["total"].as_i64().unwrap()),
            )
        })
        .collect();
    (by_customer, by_owner)
}

/// `weir produce TOPIC --brokers …`: NDJSON on stdin; the tokens printed.
fn weir_produce(brokers: &str, topic: &str, key: Option<&str>, lines: &[String]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["produce", topic, "--brokers", brokers, "--batch", "500"]);
    if let Some(k) = key {
        cmd.args(["--key", k]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir produce runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "weir produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["token"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Produces the workload: half of each stream with `weir produce`, half
/// with kafka-python. Each account id is written by one producer only, so
/// its records stay in order (one partition each); returns the tokens of
/// the last records written.
fn produce_workload(brokers: &str, w: &Workload, partitions: i32) -> Vec<String> {
    let half = w.payments.len() / 2;
    let lines: Vec<String> = w.payments[..half].iter().map(payment_json).collect();
    let mut tokens = weir_produce(brokers, "payments", None, &lines);
    let records: Vec<Value> = w.payments[half..]
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"value": payment_json(p), "partition": i as i32 % partitions}))
        .collect();
    tokens.extend(last_tokens("payments", python_produce(brokers, "payments", &records)));

    let (mine, theirs): (Vec<_>, Vec<_>) = w.accounts.iter().partition(|(id, _)| id % 2 == 0);
    let lines: Vec<String> = mine
        .iter()
        .map(|(id, row)| match row {
            Some((owner, balance)) => json!({"id": id, "owner": owner, "balance": balance}).to_string(),
            None => json!({"id": id, "__op": "delete"}).to_string(),
        })
        .collect();
    if !lines.is_empty() {
        tokens.extend(weir_produce(brokers, "accounts", Some("id"), &lines));
    }
    // kafka-python keys by the bare id (Kafka's string serializer style)
    // and places each id on one partition.
    let records: Vec<Value> = theirs
        .iter()
        .map(|(id, row)| {
            let value = row
                .as_ref()
                .map(|(owner, balance)| json!({"id": id, "owner": owner, "balance": balance}).to_string());
            json!({"key": id.to_string(), "value": value, "partition": (*id as i32) % partitions})
        })
        .collect();
    if !records.is_empty() {
        tokens.extend(last_tokens("accounts", python_produce(brokers, "accounts", &records)));
    }
    tokens
}

fn submit_job(e: &Engine, name: &str, sql: &str) {
    let (s, v) = post(e, "/v1/jobs", &json!({"name": name, "sql": sql}).to_string());
    assert_eq!(s, 201, "{v}");
}

#[test]
fn kafka_sources_equal_sqlite_across_partitions_workers_and_producers() {
    for (partitions, workers) in [(1, 1), (3, 3)] {
        let broker = Broker::start(&format!("eq{partitions}"));
        let brokers = broker.brokers();
        broker.create_topic("payments", partitions);
        broker.create_topic("accounts", partitions);
        let dir = data_dir(&format!("kafka-eq{partitions}"));
        let e = start(&dir, &["--workers", &workers.to_string()]);
        submit_job(&e, "shop", &job(&brokers, ""));

        // Two rounds, each checked after every write with the tokens of
        // both producers (read-your-writes through Kafka).
        let w1 = workload(partitions as u64, 600);
        let tokens = produce_workload(&brokers, &w1, partitions);
        assert_eq!(actual(&e, &tokens), reference(&w1.payments, &w1.accounts));
        let w2 = workload(100 + partitions as u64, 600);
        let tokens = produce_workload(&brokers, &w2, partitions);
        let all = Workload {
            payments: [w1.payments.clone(), w2.payments.clone()].concat(),
            accounts: [w1.accounts.clone(), w2.accounts.clone()].concat(),
        };
        // The accounts of one id are in one producer's stream, in order.
        let expected = reference(&all.payments, &all.accounts);
        assert_eq!(
            actual(&e, &tokens),
            expected,
            "partitions {partitions}, workers {workers}"
        );

        // The source's state: connected, every record ingested, no lag.
        let (_, v) = get(&e, "/v1/jobs/shop");
        let src = &v["kafka_sources"]["pay"];
        assert_eq!(src["connected"], true, "{v}");
        assert_eq!(src["partitions"].as_array().unwrap().len(), partitions as usize);
        let (_, m) = get(&e, "/metrics");
        let m = m.as_str().unwrap_or_default().to_string();
        assert!(
            m.contains("weir_kafka_source_connected{table=\"pay\",topic=\"payments\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("weir_kafka_consumer_lag{partition=\"0\",table=\"pay\",topic=\"payments\"}"),
            "{m}"
        );
        wait_ready(&e, Duration::from_secs(30));
        // Offsets are committed to the consumer group, for lag tools: up to
        // the end of each partition once everything is copied.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let committed = python_group_offsets(&brokers, "weir-pay");
            let ends: i64 = src["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["high_watermark"].as_i64().unwrap())
                .sum();
            if committed.values().sum::<i64>() == ends && committed.len() == partitions as usize {
                break;
            }
            assert!(Instant::now() < deadline, "{committed:?} vs {src}");
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(e);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn malformed_records_reach_the_dead_letters_with_their_kafka_positions() {
    let broker = Broker::start("dlq");
    let brokers = broker.brokers();
    broker.create_topic("payments", 1);
    broker.create_topic("accounts", 1);
    let dir = data_dir("kafka-dlq");
    let e = start(&dir, &[]);
    submit_job(&e, "shop", &job(&brokers, ""));
    let big = format!(
        "{{\"customer\": 1, \"amount\": 1, \"kind\": \"{}\"}}",
        "x".repeat(1_100_000)
    );
    let records = vec![
        json!({"value": payment_json(&(1, 100, "auth"))}),
        json!({"value": "not json"}),
        json!({"value": "{\"customer\": \"one\", \"amount\": 1, \"kind\": \"auth\"}"}),
        json!({"value": big}),
        json!({"key": "k"}),
        json!({"value": payment_json(&(1, 250, "auth"))}),
    ];
    let placed = python_produce(&brokers, "payments", &records);
    // Upsert table: keys that are no number (a tombstone's, a record's).
    let acc = python_produce(
        &brokers,
        "accounts",
        &[
            json!({"key": "zz"}),
            json!({"key": "x", "value": "{\"id\": 1, \"owner\": \"a\", \"balance\": 1}"}),
            json!({"key": "{\"id\": 2}", "value": "{\"owner\": \"b\", \"balance\": 5}"}),
        ],
    );
    let (p, last) = *placed.last().unwrap();
    let (ap, alast) = *acc.last().unwrap();
    let tokens = vec![format!("payments:{p}:{last}"), format!("accounts:{ap}:{alast}")];
    let (by_customer, by_owner) = actual(&e, &tokens);
    // The good records count; the source went on after the bad ones.
    assert_eq!(by_customer.get(&1), Some(&(2, 350)));
    // The key comes from the record's key: id 2 although the value has none.
    assert_eq!(by_owner.get("b"), Some(&(1, 5)));

    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let (_, v) = get(&e, "/v1/dlq?limit=100");
        let l = v["dead_letters"].as_array().cloned().unwrap_or_default();
        if l.len() >= 6 || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let at = |topic: &str, offset: i64| -> &Value {
        letters
            .iter()
            .find(|l| l["position"]["topic"] == topic && l["position"]["offset"] == offset)
            .unwrap_or_else(|| panic!("a dead letter at {topic}:{offset}: {letters:?}"))
    };
    assert_eq!(at("payments", 1)["position"]["partition"], 0);
    assert!(at("payments", 1)["reason"].as_str().unwrap().contains("invalid JSON"));
    assert!(at("payments", 2)["reason"].as_str().unwrap().contains("customer"));
    assert!(at("payments", 3)["reason"].as_str().unwrap().contains("oversized"));
    assert!(at("payments", 4)["reason"].as_str().unwrap().contains("tombstone"));
    assert!(at("accounts", 0)["reason"].as_str().unwrap().contains("key"));
    assert!(at("accounts", 1)["reason"].as_str().unwrap().contains("key"));
    assert_eq!(letters.len(), 6, "{letters:?}");
}

#[test]
fn every_startup_mode() {
    let broker = Broker::start("startup");
    let brokers = broker.brokers();
    broker.create_topic("s", 1);
    // Ten records with timestamps one second apart, long ago.
    let base = 1_700_000_000_000i64;
    let old: Vec<Value> = (0..10)
        .map(|i| json!({"value": json!({"i": i}).to_string(), "ts": base + i * 1000}))
        .collect();
    python_produce(&brokers, "s", &old);
    let dir = data_dir("kafka-startup");
    let e = start(&dir, &[]);
    let table = |name: &str, opts: &str| {
        format!(
            "CREATE TABLE {name} (i BIGINT) WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 's'{opts});
             CREATE MATERIALIZED VIEW {name}_v AS SELECT count(*) AS n, min(i) AS lo, max(i) AS hi FROM {name};"
        )
    };
    submit_job(
        &e,
        "earliest",
        &table("t_earliest", ", 'scan.startup.mode' = 'earliest'"),
    );
    submit_job(&e, "latest", &table("t_latest", ", 'scan.startup.mode' = 'latest'"));
    submit_job(
        &e,
        "timestamp",
        &table(
            "t_ts",
            &format!(
                ", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{}'",
                base + 6500
            ),
        ),
    );
    submit_job(
        &e,
        "offsets",
        &table(
            "t_off",
            ", 'scan.startup.mode' = 'offsets', 'scan.startup.specific-offsets' = 'partition:0,offset:3'",
        ),
    );
    // 'latest' starts where the topic ends when the source first starts:
    // wait until it has, then write more.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = get(&e, "/v1/jobs/latest");
        if v["kafka_sources"]["t_latest"]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let new: Vec<Value> = (10..15)
        .map(|i| json!({"value": json!({"i": i}).to_string()}))
        .collect();
    let placed = python_produce(&brokers, "s", &new);
    let token = format!("s:0:{}", placed.last().unwrap().1);
    let read_at = |e: &Engine, view: &str| {
        let (s, v) = get(e, &format!("/v1/views/{view}?after={token}&timeout_ms=30000"));
        assert_eq!(s, 200, "{v}");
        let r = &rows_of(&v)[0];
        (r["n"].as_i64().unwrap(), r["lo"].as_i64(), r["hi"].as_i64())
    };
    assert_eq!(read_at(&e, "t_earliest_v"), (15, Some(0), Some(14)));
    assert_eq!(read_at(&e, "t_latest_v"), (5, Some(10), Some(14)));
    assert_eq!(read_at(&e, "t_ts_v"), (8, Some(7), Some(14)));
    assert_eq!(read_at(&e, "t_off_v"), (12, Some(3), Some(14)));

    // Bad options are refused with their position.
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": format!("CREATE TABLE b (i BIGINT) WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 's',\n 'scan.startup.mode' = 'sometime')")}).to_string(),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["line"].as_u64()),
        (400, Some("invalid_option"), Some(2)),
        "{v}"
    );
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": "CREATE TABLE b (i BIGINT) WITH (connector = 'kafka', topic = 's')"}).to_string(),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_option")), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("bootstrap.servers"),
        "{v}"
    );

    // A restart resumes every source where it was: nothing read twice.
    let e = kill_and_restart(e, &dir);
    assert_eq!(read_at(&e, "t_latest_v"), (5, Some(10), Some(14)));
    assert_eq!(read_at(&e, "t_off_v"), (12, Some(3), Some(14)));
}

/// Produces `n` payments of 1.00 over 10 customers and `partitions`
/// partitions with kafka-python; the tokens of each partition's last record.
fn produce_ones(brokers: &str, first: usize, n: usize, partitions: i32) -> Vec<String> {
    let records: Vec<Value> = (first..first + n)
        .map(|i| json!({"value": payment_json(&((i % 10) as i64, 100, "auth")), "partition": (i as i32) % partitions}))
        .collect();
    last_tokens("payments", python_produce(brokers, "payments", &records))
}

/// The token of each partition's last record among `placed`.
fn last_tokens(topic: &str, placed: Vec<(i32, i64)>) -> Vec<String> {
    let last: BTreeMap<i32, i64> = placed.into_iter().collect();
    last.iter().map(|(p, o)| format!("{topic}:{p}:{o}")).collect()
}

/// The payments counted by `by_customer`, once it reflects every token.
fn total_count(e: &Engine, after: &[String]) -> i64 {
    let (s, v) = get(
        e,
        &format!("/v1/views/by_customer?timeout_ms=60000{}", after_query(after)),
    );
    assert_eq!(s, 200, "{v}");
    rows_of(&v).iter().map(|r| r["n"].as_i64().unwrap()).sum()
}

#[test]
fn broker_outage_and_engine_crash_lose_and_double_nothing() {
    let mut broker = Broker::start("faults");
    let brokers = broker.brokers();
    broker.create_topic("payments", 2);
    broker.create_topic("accounts", 2);
    let dir = data_dir("kafka-faults");
    let e = start(&dir, &[]);
    submit_job(&e, "shop", &job(&brokers, ""));
    let t = produce_ones(&brokers, 0, 500, 2);
    assert_eq!(total_count(&e, &t), 500);

    // The broker dies: the source says so, and the engine keeps serving.
    broker.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = get(&e, "/readyz");
        if s == 503 && v["error"]["code"] == "source_disconnected" {
            break;
        }
        assert!(Instant::now() < deadline, "readyz still {s} {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each source notices on its own.
    loop {
        let (_, m) = get(&e, "/metrics");
        if m.as_str()
            .unwrap()
            .contains("weir_kafka_source_connected{table=\"pay\",topic=\"payments\"} 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(total_count(&e, &t), 500);
    std::thread::sleep(Duration::from_secs(2));

    // Back: the source resumes where it was.
    broker.restart();
    let t = produce_ones(&brokers, 500, 500, 2);
    assert_eq!(total_count(&e, &t), 1000);
    wait_ready(&e, Duration::from_secs(30));
    let (_, v) = get(&e, "/v1/jobs/shop");
    assert!(v["kafka_sources"]["pay"]["retries"].as_u64().unwrap() > 0, "{v}");

    // The engine dies (kill -9) while records keep coming, then restarts.
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || produce_ones(&brokers, 1000, 2000, 2))
    };
    std::thread::sleep(Duration::from_millis(300));
    let e = kill_and_restart(e, &dir);
    let t = producer.join().unwrap();
    assert_eq!(total_count(&e, &t), 3000);

    // Both down; the engine comes back first, with no broker to reach.
    broker.kill();
    let mut e = e;
    e.child.kill().unwrap();
    let _ = e.child.wait();
    drop(e);
    let e = start(&dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = get(&e, "/readyz");
        if s == 503 && v["error"]["code"] == "source_disconnected" {
            break;
        }
        assert!(Instant::now() < deadline, "readyz {s} {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // What was copied before is served meanwhile: the tokens resolve
    // through the copy, without the broker.
    assert_eq!(total_count(&e, &t), 3000);
    broker.restart();
    let t = produce_ones(&brokers, 3000, 1000, 2);
    assert_eq!(total_count(&e, &t), 4000);
    wait_ready(&e, Duration::from_secs(30));
    // Exactly: per customer, 400 records of 1.00.
    let (_, v) = get(&e, "/v1/views/by_customer");
    for r in rows_of(&v) {
        assert_eq!(
            (r["n"].as_i64(), r["total"].as_str()),
            (Some(400), Some("400.00")),
            "{r}"
        );
    }
}

/// Rebuilds a changelog's final state: upsert (last value per key, a
/// tombstone removes) or Debezium (apply each before/after).
fn reconstruct(records: &[(Option<String>, Option<String>, Value)], debezium: bool) -> BTreeMap<String, i64> {
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    for (key, value, headers) in records {
        assert!(headers["weir.as_of"].as_str().is_some(), "every record has its as_of");
        if debezium {
            let v: Value = serde_json::from_str(value.as_deref().unwrap()).unwrap();
            for (field, d) in [("before", -1), ("after", 1)] {
                if !v[field].is_null() {
                    *rows.entry(v[field].to_string()).or_default() += d;
                }
            }
        } else {
            let key = key.clone().expect("keyed");
            rows.retain(|r, _| !r.starts_with(&format!("{key}\u{0}")));
            if let Some(v) = value {
                rows.insert(format!("{key}\u{0}{v}"), 1);
            }
        }
    }
    rows.retain(|_, n| *n != 0);
    if debezium {
        rows
    } else {
        rows.into_keys()
            .map(|k| (k.split('\u{0}').nth(1).unwrap().to_string(), 1))
            .collect()
    }
}

fn view_rows(e: &Engine, view: &str, after: &[String]) -> BTreeMap<String, i64> {
    let (s, v) = get(e, &format!("/v1/views/{view}?timeout_ms=60000{}", after_query(after)));
    assert_eq!(s, 200, "{v}");
    let mut out = BTreeMap::new();
    for r in rows_of(&v) {
        // Canonical: the value's JSON with keys sorted (serde_json's map is sorted).
        *out.entry(Value::Object(r.as_object().unwrap().clone()).to_string())
            .or_default() += 1;
    }
    out
}

#[test]
fn sinks_read_back_reconstruct_the_view_across_a_crash() {
    let broker = Broker::start("sinks");
    let brokers = broker.brokers();
    broker.create_topic("payments", 2);
    broker.create_topic("accounts", 2);
    let dir = data_dir("kafka-sinks");
    let e = start(&dir, &[]);
    let sinks = format!(
        "CREATE SINK owners_upsert FROM by_owner WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'owners_upsert', envelope = 'upsert', 'topic.partitions' = '2');
         CREATE SINK owners_dbz FROM by_owner WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'owners_dbz', envelope = 'debezium');"
    );
    submit_job(&e, "shop", &format!("{}\n{sinks}", job(&brokers, "")));
    let w = workload(7, 800);
    let tokens = produce_workload(&brokers, &w, 2);
    let want = view_rows(&e, "by_owner", &tokens);
    assert!(!want.is_empty());
    let wait_sink = |e: &Engine| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = get(e, "/v1/jobs/shop");
            let complete = get(e, "/v1/views/by_owner").1["as_of"].as_u64().unwrap();
            let done =
                v["sinks"].as_array().unwrap().iter().all(|s| {
                    s["queued_times"] == 0 && s["state"] == "running" && s["written_as_of"].as_u64().unwrap() > 0
                });
            if done && complete > 0 {
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            assert!(Instant::now() < deadline, "{v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_sink(&e);
    let upsert = reconstruct(&python_consume(&brokers, "owners_upsert"), false);
    let dbz = reconstruct(&python_consume(&brokers, "owners_dbz"), true);
    let as_values = |m: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
        m.iter()
            .map(|(k, n)| (serde_json::from_str::<Value>(k).unwrap().to_string(), *n))
            .collect()
    };
    assert_eq!(as_values(&upsert), want);
    assert_eq!(as_values(&dbz), want);

    // A crash, more changes, a restart: the topics still rebuild the view
    // (at-least-once: times after the last recorded one may be written
    // again; both envelopes stay correct read back).
    let e = kill_and_restart(e, &dir);
    let w2 = workload(8, 400);
    let tokens = produce_workload(&brokers, &w2, 2);
    let want = view_rows(&e, "by_owner", &tokens);
    wait_sink(&e);
    let upsert = reconstruct(&python_consume(&brokers, "owners_upsert"), false);
    assert_eq!(as_values(&upsert), want);

    // A rebuild hands the sinks over to the new version at the swap: the
    // changelogs go on, nothing written twice or missed.
    let (s, v) = post(&e, "/v1/jobs/shop/rebuild", "");
    assert_eq!(s, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&e, "/v1/jobs/shop").1["status"] == "replacing" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let w3 = workload(9, 400);
    let tokens = produce_workload(&brokers, &w3, 2);
    let want = view_rows(&e, "by_owner", &tokens);
    wait_sink(&e);
    let upsert = reconstruct(&python_consume(&brokers, "owners_upsert"), false);
    assert_eq!(as_values(&upsert), want);
    let dbz = reconstruct(&python_consume(&brokers, "owners_dbz"), true);
    let dbz_values = as_values(&dbz);
    // At-least-once across the crash may repeat a few times' changes in the
    // Debezium log; applied, the view's rows must all be there.
    for (row, n) in &want {
        assert!(
            dbz_values.get(row).is_some_and(|m| m >= n),
            "{row} missing from the Debezium log"
        );
    }

    let (_, m) = get(&e, "/metrics");
    assert!(
        m.as_str()
            .unwrap()
            .contains("weir_sink_records{sink=\"owners_upsert\",topic=\"owners_upsert\"}"),
        "{m}"
    );

    // A sink on a view without a key cannot be an upsert.
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "bad", "sql": format!("CREATE MATERIALIZED VIEW allpay AS SELECT customer, amount FROM pay;\nCREATE SINK s FROM allpay WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'x', envelope = 'upsert')")}).to_string(),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["line"].as_u64()),
        (400, Some("invalid_option"), Some(2)),
        "{v}"
    );
}

#[test]
fn rebuild_under_read_load_never_shows_a_partial_view() {
    let dir = data_dir("kafka-rebuild");
    let e = start(&dir, &[]);
    let (s, v) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "r", "sql": "CREATE TABLE ev (k BIGINT, v BIGINT) WITH (connector = 'log', topic = 'ev');
            CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM ev GROUP BY k;"})
        .to_string(),
    );
    assert_eq!(s, 201, "{v}");
    let body: String = (0..200_000)
        .map(|i| format!("{{\"k\": {}, \"v\": {i}}}\n", i % 50))
        .collect();
    let (s, v) = post(&e, "/v1/topics/ev/events", &body);
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (_, v) = get(&e, &format!("/v1/views/per_k?after={token}&timeout_ms=60000"));
    assert_eq!(rows_of(&v).len(), 50);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let url = e.url.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut resp = agent().get(format!("{url}/v1/views/per_k")).call().unwrap();
                let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                let rows = rows_of(&v);
                assert_eq!(rows.len(), 50, "a reader saw a partial view: {v}");
                let n: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
                assert_eq!(n, 200_000, "a reader saw a partial view");
                reads += 1;
            }
            reads
        })
    };
    let (s, v) = post(&e, "/v1/jobs/r/rebuild", "{\"from\": \"earliest\"}");
    assert_eq!(s, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = get(&e, "/v1/jobs/r");
        if v["status"] != "replacing" {
            break;
        }
        let p = &v["rebuild"];
        // Progress counts what the new version reads of all there is.
        let (done, total) = (p["events_done"].as_u64().unwrap(), p["events_total"].as_u64().unwrap());
        assert!(total >= 200_000 && done <= total, "{v}");
        assert!(Instant::now() < deadline, "rebuild did not finish: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Readers go on reading the new version for a while.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.join().expect("no reader saw a partial view");
    assert!(reads > 0, "{reads} reads during the rebuild");

    // `weir replay` from a time: only later events count.
    let (s, v) = post(&e, "/v1/topics/ev/events", "{\"k\": 1, \"v\": 1}");
    assert_eq!(s, 200, "{v}");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["replay", "r", "--from", &(now_ms() as u64).to_string(), "--url", &e.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilt"));
    let (_, v) = get(&e, "/v1/views/per_k");
    assert_eq!(rows_of(&v).len(), 0, "{v}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every record of `topic` on a broker, read with `isolation.level =
/// read_committed` by librdkafka (the mock cluster below is not a broker
/// kafka-python supports).
fn read_committed(brokers: &str, topic: &str) -> Vec<(Option<String>, Option<String>, Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut eof = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while eof < parts && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = serde_json::Map::new();
                if let Some(h) = m.headers() {
                    for h in h.iter() {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                        headers.insert(h.key.to_string(), Value::String(v));
                    }
                }
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                    Value::Object(headers),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            _ => {}
        }
    }
    out
}

/// Exactly-once needs Kafka transactions, which tansu does not implement;
/// librdkafka's mock cluster (a Kafka-protocol broker in this process) does.
#[test]
fn exactly_once_sink_writes_every_change_once_across_a_crash() {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    mock.create_topic("payments", 2, 1).unwrap();
    mock.create_topic("accounts", 2, 1).unwrap();
    // The mock cluster does not create topics on request.
    mock.create_topic("spend", 2, 1).unwrap();
    let dir = data_dir("kafka-eos");
    let e = start(&dir, &[]);
    let sql = format!(
        "{}\nCREATE SINK spend FROM by_customer WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'spend', envelope = 'debezium', 'sink.semantic' = 'exactly-once');",
        job(&brokers, "")
    );
    submit_job(&e, "shop", &sql);
    let lines = |from: usize, n: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| payment_json(&((i % 13) as i64, 100 + (i % 7) as i64, "auth")))
            .collect()
    };
    let t = weir_produce(&brokers, "payments", None, &lines(0, 3000));
    let settled = |e: &Engine, t: &[String]| {
        // Every partition's token: the last one alone let a lagging
        // partition make `want` stale.
        let want = view_rows(e, "by_customer", t);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = get(e, "/v1/jobs/shop");
            let s = &v["sinks"][0];
            if s["queued_times"] == 0 && s["state"] == "running" && s["records"].as_u64() > Some(0) {
                let got = reconstruct(&read_committed(&brokers, "spend"), true);
                let got: BTreeMap<String, i64> = got
                    .iter()
                    .map(|(k, n)| (serde_json::from_str::<Value>(k).unwrap().to_string(), *n))
                    .collect();
                if got == want {
                    return;
                }
                assert!(Instant::now() < deadline, "sink topic {got:?} != view {want:?}");
            }
            assert!(Instant::now() < deadline, "{v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    settled(&e, &t);
    // A snapshot first: the restart restores it (the Kafka copy resumes
    // after its time, the sink after what it recorded, which the snapshot
    // never passes).
    let (s, v) = post(&e, "/v1/jobs/shop/snapshot", "");
    assert_eq!(s, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let number = loop {
        let (_, v) = get(&e, "/v1/jobs/shop");
        if let Some(n) = v["snapshots"]["last"]["number"].as_u64() {
            break n;
        }
        assert!(Instant::now() < deadline, "no snapshot: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Crash while changes flow, restart: the topic, read committed, still
    // applies to exactly the view (a change written twice would not).
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            let mut t = Vec::new();
            for k in 0..5 {
                t = weir_produce(&brokers, "payments", None, &lines(3000 + k * 500, 500));
            }
            t
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let e = kill_and_restart(e, &dir);
    let t = producer.join().unwrap();
    settled(&e, &t);
    let (_, v) = get(&e, "/v1/jobs/shop");
    assert_eq!(v["sinks"][0]["semantic"], "exactly-once", "{v}");
    assert_eq!(v["snapshots"]["restored"]["number"].as_u64(), Some(number), "{v}");
    assert_eq!(v["snapshots"]["restored"]["complete"], json!(true), "{v}");
}

#[test]
fn a_topic_that_gains_partitions_is_picked_up() {
    let mut broker = Broker::start("grow");
    let brokers = broker.brokers();
    broker.create_topic("payments", 2);
    broker.create_topic("accounts", 1);
    let dir = data_dir("kafka-grow");
    let e = start(&dir, &["--workers", "3"]);
    submit_job(&e, "shop", &job(&brokers, ""));
    let t = produce_ones(&brokers, 0, 200, 2);
    assert_eq!(total_count(&e, &t), 200);
    broker.grow_topic("payments", 5);
    // Records in the new partitions only.
    let records: Vec<Value> = (0..300)
        .map(|i| json!({"value": payment_json(&(i % 10, 100, "auth")), "partition": 2 + (i as i32 % 3)}))
        .collect();
    let t = last_tokens("payments", python_produce(&brokers, "payments", &records));
    assert_eq!(total_count(&e, &t), 500);
    let (_, v) = get(&e, "/v1/jobs/shop");
    assert_eq!(
        v["kafka_sources"]["pay"]["partitions"].as_array().unwrap().len(),
        5,
        "{v}"
    );
}

#[test]
fn a_sink_retries_while_its_broker_is_down_and_loses_nothing() {
    let mut broker = Broker::start("sinkdown");
    let brokers = broker.brokers();
    let dir = data_dir("kafka-sinkdown");
    let e = start(&dir, &[]);
    let sql = format!(
        "CREATE TABLE ev (k BIGINT, v BIGINT) WITH (connector = 'log', topic = 'ev');
         CREATE MATERIALIZED VIEW sums AS SELECT k, sum(v) AS s FROM ev GROUP BY k;
         CREATE SINK sums_out FROM sums WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}',
           topic = 'sums_out', envelope = 'upsert');"
    );
    submit_job(&e, "j", &sql);
    let post_events = |from: i64| {
        let body: String = (from..from + 100)
            .map(|i| format!("{{\"k\": {}, \"v\": {i}}}\n", i % 7))
            .collect();
        let (s, v) = post(&e, "/v1/topics/ev/events", &body);
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    post_events(0);
    let sink = |e: &Engine| get(e, "/v1/jobs/j").1["sinks"][0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink(&e)["records"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "{}", sink(&e));
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.kill();
    let t2 = post_events(100);
    // The change waits and is retried; status and metrics say so.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = sink(&e);
        if s["state"] == "retrying" && s["errors"].as_u64() > Some(0) && s["last_error"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, m) = get(&e, "/metrics");
    let m = m.as_str().unwrap().to_string();
    assert!(
        m.lines()
            .any(|l| l.starts_with("weir_sink_errors{sink=\"sums_out\"") && !l.ends_with(" 0")),
        "{m}"
    );
    broker.restart();
    let want = view_rows(&e, "sums", std::slice::from_ref(&t2));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = sink(&e);
        if s["state"] == "running" && s["queued_times"] == 0 {
            let got = reconstruct(&python_consume(&brokers, "sums_out"), false);
            let got: BTreeMap<String, i64> = got
                .iter()
                .map(|(k, n)| (serde_json::from_str::<Value>(k).unwrap().to_string(), *n))
                .collect();
            if got == want {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn partitions_are_merged_in_timestamp_order_so_rules_see_nothing_late() {
    let broker = Broker::start("merge");
    let brokers = broker.brokers();
    broker.create_topic("ticks", 4);
    // Each partition holds a quarter of a stream 1 ms apart, written one
    // partition after the other: read partition by partition, the copy
    // would run minutes ahead in event time.
    let base = 1_700_000_000_000i64;
    let records: Vec<Value> = (0..4)
        .flat_map(|p| {
            (0..600).map(move |i| {
                let t = base + (i * 4 + p) * 100;
                json!({"value": json!({"k": i % 5, "v": i, "ts": t}).to_string(), "partition": p, "ts": t})
            })
        })
        .collect();
    python_produce(&brokers, "ticks", &records);
    let dir = data_dir("kafka-merge");
    let e = start(&dir, &[]);
    let sql = format!(
        "CREATE TABLE ticks (k BIGINT, v BIGINT, ts TIMESTAMP)
           WITH (connector = 'kafka', 'bootstrap.servers' = '{brokers}', topic = 'ticks', format = 'json',
                 'watermark.lateness' = '1 second', 'watermark.idle' = 'none');
         CREATE MATERIALIZED VIEW every_tick AS
           SELECT * FROM ticks MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts
             MEASURES X.v AS v ONE ROW PER MATCH PATTERN (X) DEFINE X AS X.v >= 0);
         CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM every_tick;"
    );
    submit_job(&e, "merge", &sql);
    wait_ready(&e, Duration::from_secs(60));
    // Rows within the lateness (1 s) of the newest wait for the watermark,
    // which no idle clock moves on here: all but the last 11 are decided.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get(&e, "/v1/views/n");
        let n = rows_of(&v).first().and_then(|r| r["n"].as_i64()).unwrap_or(0);
        if n >= 2389 {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = get(&e, "/v1/dlq");
    assert_eq!(v["dead_letters"].as_array().map_or(0, |l| l.len()), 0, "{v}");
}
