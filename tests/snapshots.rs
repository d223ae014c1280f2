//! Snapshots end to end, on the real binary and real RocksDB files: state
//! snapshotted, the process killed (`kill -9`), restarted with another
//! worker count from the snapshot, more input; every view equals what a
//! copy of the data directory gives when it replays its whole log
//! (`--replay`). Also a crash while a snapshot is being written, and a
//! replaced job whose old snapshot must not be used.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Every stateful construct snapshots cover: accumulable aggregates,
/// min/max over append-only input, count distinct, an inner and a left
/// join with an upsert table, DISTINCT, top-N per group, a view over a
/// view, aggregates over the upsert table.
const JOB: &str = "
CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, amount DECIMAL(10,2), status TEXT)
  WITH (connector = 'log', topic = 'orders', format = 'json');
CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name TEXT, tier TEXT)
  WITH (connector = 'log', topic = 'customers', format = 'json');
CREATE MATERIALIZED VIEW totals AS
  SELECT customer_id, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM orders GROUP BY customer_id;
CREATE MATERIALIZED VIEW extremes AS
  SELECT customer_id, min(amount) AS lo, max(amount) AS hi, count(*) AS n FROM orders GROUP BY customer_id;
CREATE MATERIALIZED VIEW kinds_per_customer AS
  SELECT customer_id, count(DISTINCT status) AS kinds FROM orders GROUP BY customer_id;
CREATE MATERIALIZED VIEW named AS
  SELECT o.order_id, c.name, c.tier FROM orders o JOIN customers c ON o.customer_id = c.customer_id;
CREATE MATERIALIZED VIEW with_customer AS
  SELECT c.customer_id, c.name, t.total FROM customers c LEFT JOIN totals t ON t.customer_id = c.customer_id;
CREATE MATERIALIZED VIEW statuses AS SELECT DISTINCT status FROM orders;
CREATE MATERIALIZED VIEW top_orders AS
  SELECT order_id, customer_id, amount FROM (
    SELECT order_id, customer_id, amount,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY amount DESC, order_id) AS rn
    FROM orders) ranked
  WHERE rn <= 2;
CREATE MATERIALIZED VIEW tiers AS SELECT tier, count(*) AS customers FROM customers GROUP BY tier;
CREATE MATERIALIZED VIEW big AS SELECT customer_id, total FROM totals WHERE total > 300;
";

/// A second job over the first one's view.
const OVER: &str = "
CREATE MATERIALIZED VIEW big_count AS SELECT count(*) AS customers FROM big;
";

const VIEWS: &[&str] = &[
    "totals",
    "extremes",
    "kinds_per_customer",
    "named",
    "with_customer",
    "statuses",
    "top_orders",
    "tiers",
    "big",
    "big_count",
];

/// A batch of orders and customer upserts (some deletes), from `seed`.
fn batch(seed: u64, first_order: i64, orders: usize) -> (String, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let statuses = ["placed", "paid", "shipped", "cancelled"];
    let orders: Vec<String> = (0..orders)
        .map(|i| {
            json!({
                "order_id": first_order + i as i64,
                "customer_id": rng.random_range(1..=25),
                "amount": format!("{}.{:02}", rng.random_range(1..200), rng.random_range(0..100)),
                "status": statuses[rng.random_range(0..statuses.len())],
            })
            .to_string()
        })
        .collect();
    let customers: Vec<String> = (0..15)
        .map(|_| {
            let id = rng.random_range(1..=25);
            if rng.random_range(0..5) == 0 {
                json!({"customer_id": id, "__op": "delete"}).to_string()
            } else {
                let tier = ["gold", "silver", "standard"][rng.random_range(0..3)];
                json!({"customer_id": id, "name": format!("c{id}-{}", rng.random_range(0..9)), "tier": tier})
                    .to_string()
            }
        })
        .collect();
    (orders.join("\n"), customers.join("\n"))
}

/// Appends a batch; returns the tokens to read after.
fn ingest(e: &Engine, seed: u64, first_order: i64) -> Vec<String> {
    let (orders, customers) = batch(seed, first_order, 150);
    let mut tokens = Vec::new();
    for (topic, body) in [("orders", orders), ("customers", customers)] {
        let (s, a) = post(e, &format!("/v1/topics/{topic}/events"), &body);
        assert_eq!(s, 200, "{a}");
        tokens.push(a["token"].as_str().expect("a token").to_string());
    }
    tokens
}

/// Every view's rows after the given writes, sorted.
fn read_all(e: &Engine, after: &[String]) -> Vec<(String, Vec<String>)> {
    read_views(e, VIEWS, after)
}

fn read_views(e: &Engine, views: &[&str], after: &[String]) -> Vec<(String, Vec<String>)> {
    views
        .iter()
        .map(|v| {
            let mut path = format!("/v1/views/{v}?limit=100000");
            for t in after {
                path.push_str(&format!("&after={t}"));
            }
            let (s, body) = get(e, &path);
            assert_eq!(s, 200, "{v}: {body}");
            let mut rows: Vec<String> = rows_of(&body).iter().map(Value::to_string).collect();
            rows.sort();
            (v.to_string(), rows)
        })
        .collect()
}

fn submit_jobs(e: &Engine) {
    for (name, sql) in [("shop", JOB), ("over", OVER)] {
        let (s, body) = post(e, "/v1/jobs", &json!({"name": name, "sql": sql}).to_string());
        assert_eq!(s, 201, "{body}");
    }
}

fn job(e: &Engine, name: &str) -> Value {
    let (s, v) = get(e, &format!("/v1/jobs/{name}"));
    assert_eq!(s, 200, "{v}");
    v
}

/// Snapshots every job and waits until each has committed one newer than
/// `after` (a snapshot number); returns the numbers.
fn snapshot_now(e: &Engine, after: u64) -> Vec<u64> {
    snapshot_jobs(e, &["shop", "over"], after)
}

fn snapshot_jobs(e: &Engine, jobs: &[&str], after: u64) -> Vec<u64> {
    // One request per job, each started once: a second one could start a
    // newer snapshot than the one waited for.
    let mut numbers = Vec::new();
    for j in jobs {
        let deadline = Instant::now() + Duration::from_secs(30);
        let number = loop {
            let (s, v) = post(e, &format!("/v1/jobs/{j}/snapshot"), "");
            assert_eq!(s, 202, "{v}");
            if v["outcome"] == json!("started") {
                break v["number"].as_u64().expect("a number");
            }
            assert!(Instant::now() < deadline, "no snapshot of {j} started: {v}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(number > after);
        numbers.push(number);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (j, n) in jobs.iter().zip(&numbers) {
        while job(e, j)["snapshots"]["last"]["number"].as_u64().unwrap_or(0) < *n {
            assert!(
                Instant::now() < deadline,
                "snapshot {n} of {j} was not committed: {}",
                job(e, j)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    numbers
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn wait_restored(e: &Engine, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = job(e, name)["snapshots"]["restored"].clone();
        if r["complete"] == json!(true) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restore_after_kill_equals_full_replay_with_other_worker_counts() {
    let dir = data_dir("snap");
    let replay_dir = data_dir("snap-replay");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    submit_jobs(&e);
    let mut tokens = ingest(&e, 1, 0);
    tokens.extend(ingest(&e, 2, 1000));
    let _ = read_all(&e, &tokens);
    snapshot_now(&e, 0);
    // More input after the snapshot: the restart must read exactly this.
    let tokens = ingest(&e, 3, 2000);
    let before = read_all(&e, &tokens);

    // kill -9; a copy replays everything, the original restores (2 → 3
    // workers, and the copy on 1).
    drop(e);
    copy_dir(&dir, &replay_dir);
    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "3"]);
    let r = wait_restored(&e, "shop");
    assert_eq!(
        r["complete"],
        json!(true),
        "the job was restored from its snapshot: {r}"
    );
    assert!(r["error"].is_null(), "{r}");
    assert!(r["entries"].as_u64().unwrap_or(0) > 0, "{r}");
    wait_ready(&e, Duration::from_secs(60));
    let replay = start(&replay_dir, &["--snapshot-interval", "0", "--workers", "1", "--replay"]);
    assert!(job(&replay, "shop")["snapshots"]["restored"].is_null());
    wait_ready(&replay, Duration::from_secs(60));
    assert_eq!(
        read_all(&e, &[]),
        before,
        "restored views equal the views before the kill"
    );
    assert_eq!(read_all(&replay, &[]), before, "a full replay gives the same views");

    // More input into both: they stay equal (3 → 1 workers for the next
    // restore below).
    let t1 = ingest(&e, 4, 3000);
    let t2 = ingest(&replay, 4, 3000);
    let restored = read_all(&e, &t1);
    assert_eq!(restored, read_all(&replay, &t2));

    // Snapshot again on 3 workers, kill, restore on 1.
    let last = job(&e, "shop")["snapshots"]["last"]["number"].as_u64().unwrap_or(0);
    snapshot_now(&e, last);
    drop(e);
    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "1"]);
    let r = wait_restored(&e, "shop");
    assert_eq!(r["complete"], json!(true), "{r}");
    wait_ready(&e, Duration::from_secs(60));
    assert_eq!(read_all(&e, &[]), restored);
    drop(e);
    drop(replay);
}

#[test]
fn a_crash_while_writing_a_snapshot_leaves_the_previous_one_in_force() {
    let dir = data_dir("snap-crash");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    submit_jobs(&e);
    let tokens = ingest(&e, 11, 0);
    let _ = read_all(&e, &tokens);
    let first = snapshot_now(&e, 0);
    drop(e);

    // The writer now stalls before every manifest: the second snapshot is
    // never committed when the process is killed.
    let mut e = start_env(
        &dir,
        &["serve"],
        &["--snapshot-interval", "0"],
        &[("WEIR_FAULT_SNAPSHOT_STALL_MS", "60000")],
    );
    wait_ready(&e, Duration::from_secs(60));
    let tokens = ingest(&e, 12, 1000);
    let before = read_all(&e, &tokens);
    let (s, v) = post(&e, "/v1/jobs/shop/snapshot", "");
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["outcome"], json!("started"), "{v}");
    std::thread::sleep(Duration::from_millis(500));
    let _ = e.child.kill();
    let _ = e.child.wait();

    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "3"]);
    let r = wait_restored(&e, "shop");
    assert_eq!(
        r["number"].as_u64(),
        Some(first[0]),
        "the previous snapshot is used: {r}"
    );
    wait_ready(&e, Duration::from_secs(60));
    assert_eq!(read_all(&e, &[]), before);
}

#[test]
fn a_replaced_job_does_not_restore_the_old_plans_snapshot() {
    let dir = data_dir("snap-replace");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    submit_jobs(&e);
    let tokens = ingest(&e, 21, 0);
    let _ = read_all(&e, &tokens);
    snapshot_now(&e, 0);
    // Replace a job with another plan (it counts differently).
    let new_sql = OVER.replace("count(*) AS customers", "count(*) + 1 AS customers");
    assert_ne!(new_sql, OVER);
    let (s, v) = put(&e, "/v1/jobs/over", json!({"sql": new_sql}));
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while job(&e, "over")["status"] != json!("running") {
        assert!(Instant::now() < deadline, "the replacement never swapped in");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = read_all(&e, &[]);
    drop(e);
    let e = start(&dir, &["--snapshot-interval", "0"]);
    wait_ready(&e, Duration::from_secs(60));
    assert!(
        job(&e, "over")["snapshots"]["restored"].is_null(),
        "the old plan's snapshot was removed at the swap and not restored"
    );
    assert_eq!(
        wait_restored(&e, "shop")["complete"],
        json!(true),
        "the other job restores"
    );
    let after = read_all(&e, &[]);
    assert_eq!(after, before);
    assert!(
        after
            .iter()
            .any(|(v, rows)| v == "big_count" && rows.iter().any(|r| r.contains("customers"))),
        "{after:?}"
    );
}

const RULES: &str = "
CREATE TABLE events (user_id BIGINT, kind TEXT, ts TIMESTAMP)
  WITH (connector = 'log', topic = 'events', format = 'json',
        'watermark.lateness' = '0 seconds', 'watermark.idle' = 'none');
CREATE MATERIALIZED VIEW journeys AS
SELECT * FROM events MATCH_RECOGNIZE (
  PARTITION BY user_id ORDER BY ts
  MEASURES A.ts AS started, C.ts AS finished, MATCH_NUMBER() AS n
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B* C) WITHIN INTERVAL '10' SECOND
  DEFINE A AS kind = 'start', B AS kind = 'step', C AS kind = 'end'
);
CREATE MATERIALIZED VIEW timeouts AS
SELECT user_id, started FROM events MATCH_RECOGNIZE (
  PARTITION BY user_id ORDER BY ts
  MEASURES A.ts AS started, TIMED_OUT() AS timed_out
  PATTERN (A B*? C) WITHIN INTERVAL '5' SECOND EMIT TIMEOUTS
  DEFINE A AS kind = 'start', B AS kind = 'step', C AS kind = 'end'
) AS t
WHERE timed_out;
CREATE MATERIALIZED VIEW matches_per_user AS
SELECT user_id, count(*) AS matches FROM journeys GROUP BY user_id;
";

const RULE_VIEWS: &[&str] = &["journeys", "timeouts", "matches_per_user"];

/// Appends one event per request (each its own tick); returns the last token.
fn events(e: &Engine, evs: &[(i64, &str, i64)]) -> String {
    let mut token = String::new();
    for (user, kind, second) in evs {
        let ts = format!("2026-11-30T10:00:{second:02}Z");
        let (s, a) = post(
            e,
            "/v1/topics/events/events",
            &json!({"user_id": user, "kind": kind, "ts": ts}).to_string(),
        );
        assert_eq!(s, 200, "{a}");
        token = a["token"].as_str().expect("a token").to_string();
    }
    token
}

#[test]
fn pattern_rules_resume_mid_match_and_time_out_after_a_restore() {
    let dir = data_dir("snap-rules");
    let replay_dir = data_dir("snap-rules-replay");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "rules", "sql": RULES}).to_string());
    assert_eq!(s, 201, "{body}");
    // User 1 starts a journey, user 2 starts one that will time out, user 3
    // completes one; user 9 only moves event time on (to :03).
    let t = events(
        &e,
        &[
            (1, "start", 0),
            (2, "start", 0),
            (3, "start", 0),
            (1, "step", 1),
            (3, "end", 2),
            (9, "tick", 3),
        ],
    );
    let before = read_views(&e, RULE_VIEWS, &[t]);
    assert_eq!(before[0].1.len(), 1, "only user 3's journey is complete: {before:?}");
    assert!(before[1].1.is_empty(), "nothing timed out yet: {before:?}");
    snapshot_jobs(&e, &["rules"], 0);
    drop(e);
    copy_dir(&dir, &replay_dir);

    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "3"]);
    assert_eq!(wait_restored(&e, "rules")["complete"], json!(true));
    let replay = start(&replay_dir, &["--snapshot-interval", "0", "--workers", "1", "--replay"]);
    // User 1 ends the journey started before the snapshot; user 3 makes a
    // second one (MATCH_NUMBER 2); event time passes :05, so user 2's
    // journey times out, at event time :00 + 5 s.
    let after_events = [
        (1, "end", 4),
        (3, "start", 6),
        (3, "end", 7),
        (9, "tick", 8),
        (9, "tick", 9),
    ];
    let t1 = events(&e, &after_events);
    let t2 = events(&replay, &after_events);
    let restored = read_views(&e, RULE_VIEWS, &[t1]);
    let replayed = read_views(&replay, RULE_VIEWS, &[t2]);
    assert_eq!(restored, replayed, "a restored rule set equals a full replay");
    let journeys = &restored[0].1;
    assert_eq!(journeys.len(), 3, "{journeys:?}");
    assert!(
        journeys
            .iter()
            .any(|j| j.contains("\"user_id\":1") && j.contains("10:00:04")),
        "user 1's journey, started before the snapshot, completed after it: {journeys:?}"
    );
    assert!(
        journeys
            .iter()
            .any(|j| j.contains("\"user_id\":3") && j.contains("\"n\":2")),
        "the match count continued: {journeys:?}"
    );
    let timeouts = &restored[1].1;
    assert_eq!(timeouts.len(), 1, "{timeouts:?}");
    assert!(timeouts[0].contains("\"user_id\":2"), "{timeouts:?}");
    drop(e);
    drop(replay);
}

#[test]
fn retention_removes_only_what_every_reader_has_snapshotted() {
    let dir = data_dir("snap-retention");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    submit_jobs(&e);
    let held = |e: &Engine| {
        let (s, v) = get(e, "/v1/topics/orders");
        assert_eq!(s, 200, "{v}");
        v
    };
    let t = ingest(&e, 41, 0);
    let _ = read_all(&e, &t);
    // No snapshot yet: every record is still needed, whatever the policy.
    let (s, v) = post(
        &e,
        "/v1/topics/orders",
        &json!({"retention": {"age": "1 ms"}}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["held"]["records"], json!(150), "{v}");
    assert_eq!(v["held"]["trimmed_through"], json!(0), "{v}");
    assert_eq!(v["needed_from"], json!(0), "{v}");

    snapshot_now(&e, 0);
    let t = ingest(&e, 42, 1000);
    let before = read_all(&e, &t);
    // Now the records before the snapshot may go; those after it stay.
    let (s, v) = post(
        &e,
        "/v1/topics/orders",
        &json!({"retention": {"age": "1 ms"}}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    // Each batch went to one partition; the first one's partition keeps its
    // last record, which a restart resumes its offsets from.
    assert_eq!(
        v["held"]["records"],
        json!(151),
        "only the second batch (and the first one's last record) is held: {v}"
    );
    let through = v["held"]["trimmed_through"].as_u64().unwrap_or(0);
    assert!(through > 0, "{v}");
    assert_eq!(held(&e)["policy"]["max_age_ms"], json!(1));
    // A rebuild from the start needs what is gone: refused, saying what is held.
    let (s, v) = post(&e, "/v1/jobs/shop/rebuild", "");
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], json!("history_trimmed"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{}", through + 1)),
        "{v}"
    );
    // Bad settings are refused and change nothing.
    let (s, v) = post(
        &e,
        "/v1/topics/orders",
        &json!({"retention": {"age": "soon"}}).to_string(),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(held(&e)["policy"]["max_age_ms"], json!(1));
    // The views are whole after a restart from the snapshot.
    drop(e);
    let e = start(&dir, &["--snapshot-interval", "0"]);
    assert_eq!(wait_restored(&e, "shop")["complete"], json!(true));
    wait_ready(&e, Duration::from_secs(60));
    assert_eq!(read_all(&e, &[]), before);
    // Keeping everything again.
    let (s, v) = post(&e, "/v1/topics/orders", &json!({"retention": null}).to_string());
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["policy"]["max_age_ms"], Value::Null, "{v}");
    // A table's own option sets its topic's policy.
    let sql = "CREATE TABLE clicks (n BIGINT) WITH (connector = 'log', topic = 'clicks', 'retention' = '1 hour', 'retention.bytes' = '1 MB');
               CREATE MATERIALIZED VIEW click_count AS SELECT count(*) AS n FROM clicks;";
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "clicks", "sql": sql}).to_string());
    assert_eq!(s, 201, "{body}");
    let (s, v) = get(&e, "/v1/topics/clicks");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["policy"],
        json!({"max_age_ms": 3_600_000, "max_bytes": 1_000_000}),
        "{v}"
    );
}

/// Every view of the job `shop` at exactly `as_of`.
fn read_at(e: &Engine, as_of: u64) -> Vec<(String, Vec<String>)> {
    VIEWS[..VIEWS.len() - 1]
        .iter()
        .map(|v| {
            let (s, body) = get(e, &format!("/v1/views/{v}?limit=100000&as_of={as_of}"));
            assert_eq!(s, 200, "{v} as of {as_of}: {body}");
            assert_eq!(body["as_of"], json!(as_of), "{body}");
            let mut rows: Vec<String> = rows_of(&body).iter().map(Value::to_string).collect();
            rows.sort();
            (v.to_string(), rows)
        })
        .collect()
}

/// The `as_of` every view was complete at after the given writes.
fn as_of_after(e: &Engine, after: &[String]) -> u64 {
    let mut path = "/v1/views/totals?limit=1".to_string();
    for t in after {
        path.push_str("&after=");
        path.push_str(t);
    }
    let (s, body) = get(e, &path);
    assert_eq!(s, 200, "{body}");
    body["as_of"].as_u64().expect("an as_of")
}

#[test]
fn point_in_time_reads_older_than_the_live_window_equal_the_views_then() {
    let dir = data_dir("snap-pit");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    submit_jobs(&e);
    let t = ingest(&e, 51, 0);
    let first_at = as_of_after(&e, &t);
    let first = read_at(&e, first_at);
    // Later, with a snapshot in between: the second read starts from it.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = ingest(&e, 52, 1000);
    snapshot_jobs(&e, &["shop"], 0);
    let t2 = ingest(&e, 53, 2000);
    let second_at = as_of_after(&e, &t2);
    let second = read_at(&e, second_at);
    std::thread::sleep(Duration::from_millis(2500));
    let _ = ingest(&e, 54, 3000);
    // Both times are now older than the 2 s the live views keep.
    assert_eq!(
        read_at(&e, first_at),
        first,
        "as of the first time, from the start of the log"
    );
    assert_eq!(
        read_at(&e, second_at),
        second,
        "as of the second time, from the snapshot"
    );
    assert_ne!(first, second);
    // A view over another job's view would need that one as of the time too.
    let (s, body) = get(&e, &format!("/v1/views/big_count?as_of={first_at}"));
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("as_of_too_old"), "{body}");
    // After a restart too.
    drop(e);
    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "3"]);
    wait_ready(&e, Duration::from_secs(60));
    assert_eq!(read_at(&e, first_at), first);
    assert_eq!(read_at(&e, second_at), second);
}

/// An upsert table whose topic is key-compacted, and a view of each kind.
const PROFILES: &str = "
CREATE TABLE profiles (customer_id BIGINT PRIMARY KEY, name TEXT, tier TEXT)
  WITH (connector = 'log', topic = 'profiles', 'cleanup.policy' = 'compact');
CREATE MATERIALIZED VIEW profile_rows AS SELECT customer_id, name, tier FROM profiles;
CREATE MATERIALIZED VIEW profile_tiers AS SELECT tier, count(*) AS n FROM profiles GROUP BY tier;
";

const PROFILE_VIEWS: &[&str] = &["profile_rows", "profile_tiers"];

/// Upserts and deletes of 25 customers, from `seed`; the token.
fn profiles(e: &Engine, seed: u64) -> String {
    let (s, a) = post(e, "/v1/topics/profiles/events", &batch(seed, 0, 0).1);
    assert_eq!(s, 200, "{a}");
    a["token"].as_str().expect("a token").to_string()
}

#[test]
fn compaction_keeps_the_latest_record_per_key_and_a_replay_gives_the_same_views() {
    let dir = data_dir("snap-compact");
    let replay_dir = data_dir("snap-compact-replay");
    let e = start(&dir, &["--snapshot-interval", "0"]);
    let (s, body) = post(
        &e,
        "/v1/jobs",
        &json!({"name": "profiles", "sql": PROFILES}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let early = profiles(&e, 61);
    let (s, body) = get(&e, &format!("/v1/views/profile_rows?limit=1&after={early}"));
    assert_eq!(s, 200, "{body}");
    let early_at = body["as_of"].as_u64().expect("an as_of");
    let mut token = String::new();
    for seed in 62..72 {
        token = profiles(&e, seed);
    }
    let topic = |e: &Engine| {
        let (s, v) = get(e, "/v1/topics/profiles");
        assert_eq!(s, 200, "{v}");
        v
    };
    // The table's option set the policy; with no snapshot, nothing goes.
    let v = topic(&e);
    assert_eq!(v["policy"]["compact"], json!(true), "{v}");
    assert_eq!(v["held"]["records"], json!(165), "{v}");
    let before = read_views(&e, PROFILE_VIEWS, std::slice::from_ref(&token));
    snapshot_jobs(&e, &["profiles"], 0);
    let (s, v) = post(
        &e,
        "/v1/topics/profiles",
        &json!({"retention": {"compact": true}}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    // At most one record per key, plus each partition's last.
    let held = v["held"]["records"].as_u64().unwrap_or(0);
    assert!(held <= 25 + 4, "{v}");
    assert!(v["held"]["compacted_through"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v.get("compaction_held").is_none(), "{v}");
    // The history in between is gone: a point-in-time read there says so.
    std::thread::sleep(Duration::from_millis(2500));
    let (s, body) = get(&e, &format!("/v1/views/profile_rows?as_of={early_at}"));
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("history_compacted"), "{body}");
    // More input after it; then kill -9. The original restores from its
    // snapshot, a copy replays the compacted log from its start: both
    // equal the views computed over the whole history.
    let token = profiles(&e, 72);
    let after = read_views(&e, PROFILE_VIEWS, &[token]);
    assert_ne!(after, before);
    drop(e);
    copy_dir(&dir, &replay_dir);
    let e = start(&dir, &["--snapshot-interval", "0", "--workers", "3"]);
    assert_eq!(wait_restored(&e, "profiles")["complete"], json!(true));
    wait_ready(&e, Duration::from_secs(60));
    assert_eq!(read_views(&e, PROFILE_VIEWS, &[]), after);
    let replay = start(&replay_dir, &["--snapshot-interval", "0", "--replay"]);
    wait_ready(&replay, Duration::from_secs(60));
    assert_eq!(
        read_views(&replay, PROFILE_VIEWS, &[]),
        after,
        "a replay of the compacted log"
    );
    assert_eq!(topic(&replay)["held"]["records"].as_u64(), Some(held + 15));
    // A table reading the topic append-only holds compaction: it would
    // change that table. Job status says why.
    let sql = "CREATE TABLE profile_events (customer_id BIGINT, name TEXT, tier TEXT)
                 WITH (connector = 'log', topic = 'profiles');
               CREATE MATERIALIZED VIEW profile_event_count AS SELECT count(*) AS n FROM profile_events;";
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "raw", "sql": sql}).to_string());
    assert_eq!(s, 201, "{body}");
    let v = topic(&e);
    assert!(
        v["compaction_held"]
            .as_str()
            .is_some_and(|r| r.contains("profile_events") && r.contains("append-only")),
        "{v}"
    );
    drop(e);
    drop(replay);
}
