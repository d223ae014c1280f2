//! Action sinks end to end: the real binary calls real HTTP services
//! (tests/common/service.rs) that fail on purpose — 500s, answers slower
//! than the timeout, refused connections, 429 with `Retry-After`, 4xx —
//! and record every request; the tests check each change is effected once
//! by idempotency key, the backoff between attempts, the circuit breaker's
//! states from the recorded request times, the dead letters and the
//! fallback and response topics, and a `kill -9` mid-way.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::service::{Reply, Seen, Service};
use common::{data_dir, get, kill_and_restart, post, start, Engine};
use serde_json::{json, Value};

const TABLE: &str =
    "CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT, amount DECIMAL(12,2), status TEXT)
  WITH (connector = 'log', topic = 'orders', format = 'json');
CREATE MATERIALIZED VIEW placed AS SELECT order_id, customer_id, amount FROM orders WHERE status = 'placed';";

fn submit(e: &Engine, name: &str, sql: &str) {
    let (s, v) = post(e, "/v1/jobs", &json!({"name": name, "sql": sql}).to_string());
    assert_eq!(s, 201, "{v}");
}

/// The job of the tests: `placed` orders charged by a sink to
/// `service`/charge/{order_id} with `options`.
fn submit_charge(e: &Engine, service: &str, options: &str) {
    let sql = format!(
        "{TABLE}\nCREATE SINK charge FROM placed WITH (connector = 'http', url = '{service}/charge/{{order_id}}', {options});"
    );
    submit(e, "charge", &sql);
}

fn place(e: &Engine, ids: impl IntoIterator<Item = i64>) {
    let events: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({"order_id": id, "customer_id": id % 7, "amount": format!("{id}.50"), "status": "placed"}))
        .collect();
    let (s, v) = post(e, "/v1/topics/orders/events", &Value::Array(events).to_string());
    assert_eq!(s, 200, "{v}");
}

/// Every event of `topic`, all partitions.
fn topic_events(e: &Engine, topic: &str) -> Vec<Value> {
    let (_, topics) = get(e, "/v1/topics");
    let Some(t) = topics
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == topic))
        .cloned()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (p, end) in t["end_offsets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let end = end.as_u64().unwrap_or(0);
        let mut from = 0;
        while from < end {
            let (s, page) = get(
                e,
                &format!("/v1/topics/{topic}/events?partition={p}&from={from}&limit=10000"),
            );
            assert_eq!(s, 200, "{page}");
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break;
            }
            for ev in events {
                from = ev["offset"].as_u64().unwrap_or(end) + 1;
                out.push(ev["event"].clone());
            }
        }
    }
    out
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sink's status in its job's status.
fn sink_status(e: &Engine, job: &str, sink: &str) -> Value {
    let (_, v) = get(e, &format!("/v1/jobs/{job}"));
    v["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == sink))
        .cloned()
        .unwrap_or(Value::Null)
}

fn by_key(seen: &[Seen]) -> BTreeMap<String, Vec<Seen>> {
    let mut out: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for s in seen {
        out.entry(s.key.clone()).or_default().push(s.clone());
    }
    out
}

fn order_of(s: &Seen) -> i64 {
    s.path.rsplit('/').next().and_then(|id| id.parse().ok()).unwrap_or(-1)
}

#[test]
fn retries_follow_the_backoff_and_each_change_is_effected_once() {
    // Orders fail twice with 500 before they succeed; every fifth answers
    // 429 with Retry-After: 1 once instead.
    let svc = Service::start(Box::new(|s: &Seen, before: &[Seen]| {
        let id = order_of(s);
        if id % 5 == 0 {
            if before.is_empty() {
                Reply::status(429).retry_after(1)
            } else {
                Reply::ok()
            }
        } else if before.len() < 2 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }));
    let dir = data_dir("actions-retry");
    let e = start(&dir, &[]);
    submit_charge(&e, &svc.url(), "'retry.initial' = '200 ms', 'retry.max.delay' = '2 s', 'retry.attempts' = '5', 'breaker.failures' = '1000', 'max.in.flight' = '8', 'response.topic' = 'charge_results'");
    place(&e, 1..=20);
    let results = wait_for("20 outcomes on the response topic", Duration::from_secs(60), || {
        let r = topic_events(&e, "charge_results");
        (r.len() >= 20).then_some(r)
    });
    assert_eq!(results.len(), 20, "one outcome per change: {results:?}");
    let seen = svc.seen();
    let keys = by_key(&seen);
    assert_eq!(keys.len(), 20, "one idempotency key per change");
    assert_eq!(svc.effected().len(), 20);
    for (key, attempts) in &keys {
        let id = order_of(&attempts[0]);
        assert!(attempts.iter().all(|a| order_of(a) == id), "one key, one order: {key}");
        assert_eq!(attempts[0].body["order_id"], json!(id), "the row is the body");
        let numbers: Vec<u32> = attempts.iter().map(|a| a.attempt).collect();
        if id % 5 == 0 {
            assert_eq!(numbers, vec![1, 2], "{key}");
            let gap = attempts[1].at - attempts[0].at;
            assert!(gap >= Duration::from_millis(950), "Retry-After 1 s waited out: {gap:?}");
        } else {
            assert_eq!(numbers, vec![1, 2, 3], "{key}");
            // Equal jitter: at least half the ceiling (200 ms, 400 ms).
            let first = attempts[1].at - attempts[0].at;
            let second = attempts[2].at - attempts[1].at;
            assert!(first >= Duration::from_millis(95), "first retry after {first:?}");
            assert!(second >= Duration::from_millis(195), "second retry after {second:?}");
            assert!(first <= Duration::from_millis(1500) && second <= Duration::from_millis(2500));
        }
    }
    for r in &results {
        assert_eq!(r["sink"], "charge");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["outcome"], "delivered");
        assert_eq!(r["status"], 200);
        assert_eq!(r["response"], json!({"status": 200}));
        let id = r["row"]["order_id"].as_i64().expect("the row");
        let expected = if id % 5 == 0 { 2 } else { 3 };
        assert_eq!(r["attempts"], expected, "{r}");
        assert!(keys.contains_key(r["idempotency_key"].as_str().unwrap_or("")));
    }
    let st = sink_status(&e, "charge", "charge");
    assert_eq!(st["connector"], "http", "{st}");
    assert_eq!(st["http"]["delivered"], 20, "{st}");
    assert_eq!(st["http"]["retries"], 36, "{st}");
    assert_eq!(st["http"]["pending"], 0, "{st}");
    let metrics = common::metrics_text(&e);
    assert!(
        metrics.contains("weir_action_outcomes{outcome=\"delivered\",sink=\"charge\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_action_retries{sink=\"charge\"} 36"), "{metrics}");
}

#[test]
fn permanent_failures_and_time_outs_reach_the_dead_letters_and_the_fallback() {
    // 400 for odd orders: permanent, one attempt. Order 10 is slower than
    // the timeout every time. The rest succeed.
    let svc = Service::start(Box::new(|s: &Seen, _: &[Seen]| {
        let id = order_of(s);
        if id == 10 {
            Reply::ok().after(Duration::from_millis(1500))
        } else if id % 2 == 1 {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    }));
    let dir = data_dir("actions-fallback");
    let e = start(&dir, &[]);
    submit_charge(&e, &svc.url(), "timeout = '300 ms', 'retry.initial' = '50 ms', 'retry.attempts' = '3', 'breaker.failures' = '1000', 'fallback.topic' = 'charge_failed', 'response.topic' = 'charge_results'");
    place(&e, 1..=10);
    let results = wait_for("10 outcomes", Duration::from_secs(60), || {
        let r = topic_events(&e, "charge_results");
        (r.len() >= 10).then_some(r)
    });
    let failed = topic_events(&e, "charge_failed");
    let failed_ids: BTreeSet<i64> = failed.iter().filter_map(|f| f["row"]["order_id"].as_i64()).collect();
    assert_eq!(failed_ids, BTreeSet::from([1, 3, 5, 7, 9, 10]), "{failed:?}");
    assert_eq!(failed.len(), 6, "one fallback event each");
    for f in &failed {
        assert_eq!(f["ok"], false);
        assert_eq!(f["outcome"], "failed");
        let id = f["row"]["order_id"].as_i64().unwrap_or(0);
        if id == 10 {
            assert_eq!(f["attempts"], 3, "time-outs are retried: {f}");
            assert!(f["status"].is_null(), "no answer in time: {f}");
            assert!(
                f["reason"].as_str().unwrap_or("").contains("no answer within 300 ms"),
                "{f}"
            );
        } else {
            assert_eq!(f["attempts"], 1, "a 400 is not retried: {f}");
            assert_eq!(f["status"], 400);
            assert!(f["reason"].as_str().unwrap_or("").contains("400"), "{f}");
        }
    }
    let ok: BTreeSet<i64> = results
        .iter()
        .filter(|r| r["ok"] == true)
        .filter_map(|r| r["row"]["order_id"].as_i64())
        .collect();
    assert_eq!(ok, BTreeSet::from([2, 4, 6, 8]));
    let letters = wait_for("6 dead letters", Duration::from_secs(10), || {
        let (_, d) = get(&e, "/v1/dlq?limit=100");
        let l: Vec<Value> = d["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l["source"] == "charge")
            .collect();
        (l.len() >= 6).then_some(l)
    });
    assert_eq!(letters.len(), 6, "{letters:?}");
    for l in &letters {
        let payload: Value = serde_json::from_str(l["payload"].as_str().unwrap_or("")).unwrap_or(Value::Null);
        assert_eq!(payload["kind"], "action", "{l}");
        assert!(
            payload["request"]["url"].as_str().unwrap_or("").contains("/charge/"),
            "{l}"
        );
        assert!(!l["reason"].as_str().unwrap_or("").is_empty());
    }
    let st = sink_status(&e, "charge", "charge");
    assert_eq!(st["http"]["failed"], 6, "{st}");
    assert_eq!(st["http"]["delivered"], 4, "{st}");
}

#[test]
fn the_circuit_opens_half_opens_and_closes() {
    // The service is down (503) until the test brings it back.
    let svc = Service::start(Box::new(|_: &Seen, _: &[Seen]| Reply::status(503)));
    let dir = data_dir("actions-breaker");
    let e = start(&dir, &[]);
    submit_charge(&e, &svc.url(), "'retry.initial' = '20 ms', 'retry.max.delay' = '50 ms', 'retry.attempts' = '1000', 'breaker.failures' = '3', 'breaker.cooldown' = '1 s', 'max.in.flight' = '1'");
    place(&e, [1]);
    wait_for("the circuit to open", Duration::from_secs(20), || {
        (sink_status(&e, "charge", "charge")["http"]["circuit"] == "open").then_some(())
    });
    // Two failed probes, a cool-down apart, then the service recovers.
    wait_for("two more probes", Duration::from_secs(20), || {
        (svc.seen().len() >= 5).then_some(())
    });
    svc.set_rule(Box::new(|_: &Seen, _: &[Seen]| Reply::ok()));
    place(&e, 2..=5);
    wait_for("all five delivered", Duration::from_secs(20), || {
        (svc.effected().len() == 5).then_some(())
    });
    let seen = svc.seen();
    assert_eq!(seen[..3].iter().map(|s| s.status).collect::<Vec<_>>(), vec![503; 3]);
    // While open nothing is sent: each attempt after the third comes a
    // cool-down after the one before (a probe), until one succeeds.
    let probes: Vec<&Seen> = seen[3..].iter().take_while(|s| s.status == 503).collect();
    assert!(probes.len() >= 2, "{seen:?}");
    let mut last = seen[2].at;
    for p in probes.iter().copied().chain(seen.iter().skip(3 + probes.len()).take(1)) {
        let gap = p.at - last;
        assert!(
            gap >= Duration::from_millis(950),
            "a probe {gap:?} after the failure before it"
        );
        last = p.at;
    }
    let st = wait_for("the circuit to close", Duration::from_secs(10), || {
        let st = sink_status(&e, "charge", "charge");
        (st["http"]["circuit"] == "closed").then_some(st)
    });
    assert!(st["http"]["circuit_opened"].as_u64() >= Some(3), "{st}");
    let metrics = common::metrics_text(&e);
    assert!(
        metrics.contains("weir_action_circuit_state{sink=\"charge\"} 0"),
        "{metrics}"
    );
}

#[test]
fn refused_connections_wait_for_the_service() {
    // Nothing listens on the port until the service starts there.
    let port = common::free_port();
    let dir = data_dir("actions-refused");
    let e = start(&dir, &[]);
    submit_charge(
        &e,
        &format!("http://127.0.0.1:{port}"),
        "'retry.initial' = '50 ms', 'retry.max.delay' = '200 ms', 'retry.attempts' = '1000', 'breaker.failures' = '5', 'breaker.cooldown' = '300 ms'",
    );
    place(&e, 1..=3);
    let st = wait_for("a refused connection in the status", Duration::from_secs(20), || {
        let st = sink_status(&e, "charge", "charge");
        (st["http"]["retries"].as_u64() >= Some(3)).then_some(st)
    });
    assert_eq!(st["http"]["delivered"], 0, "{st}");
    let svc = Service::start_on(port, Box::new(|_: &Seen, _: &[Seen]| Reply::ok()));
    wait_for("all three delivered", Duration::from_secs(20), || {
        (svc.effected().len() == 3).then_some(())
    });
    let st = wait_for("the outcomes recorded", Duration::from_secs(10), || {
        let st = sink_status(&e, "charge", "charge");
        (st["http"]["delivered"] == 3).then_some(st)
    });
    assert_eq!(st["http"]["pending"], 0, "{st}");
}

#[test]
fn a_kill_9_mid_way_effects_every_change_once() {
    // A slow service: a kill lands while requests are in flight.
    let svc = Service::start(Box::new(|_: &Seen, _: &[Seen]| {
        Reply::ok().after(Duration::from_millis(30))
    }));
    let dir = data_dir("actions-kill");
    let e = start(&dir, &[]);
    submit_charge(
        &e,
        &svc.url(),
        "'max.in.flight' = '4', 'response.topic' = 'charge_results'",
    );
    place(&e, 1..=150);
    wait_for("some delivered", Duration::from_secs(30), || {
        (svc.effected().len() >= 40).then_some(())
    });
    let e = kill_and_restart(e, &dir);
    place(&e, 151..=200);
    // A snapshot (taken once the sink took in everything through its
    // time), more changes, and a kill: the restart restores the snapshot.
    wait_for("200 effected", Duration::from_secs(60), || {
        (svc.effected().len() >= 200).then_some(())
    });
    wait_for("a snapshot", Duration::from_secs(30), || {
        let (s, v) = post(&e, "/v1/jobs/charge/snapshot", "");
        assert_eq!(s, 202, "{v}");
        (v["outcome"] == "started").then_some(())
    });
    wait_for("the snapshot written", Duration::from_secs(30), || {
        let (_, job) = get(&e, "/v1/jobs/charge");
        job["snapshots"]["last"].is_object().then_some(())
    });
    place(&e, 201..=250);
    let e = kill_and_restart(e, &dir);
    let (_, job) = get(&e, "/v1/jobs/charge");
    assert!(
        job["snapshots"]["restored"].is_object(),
        "restored from the snapshot: {job}"
    );
    wait_for("all 250 effected", Duration::from_secs(60), || {
        (svc.effected().len() >= 250).then_some(())
    });
    let results = wait_for("250 outcomes", Duration::from_secs(30), || {
        let r = topic_events(&e, "charge_results");
        (r.len() >= 250).then_some(r)
    });
    let effected = svc.effected();
    let ids: BTreeSet<i64> = effected.values().filter_map(|b| b["order_id"].as_i64()).collect();
    assert_eq!(ids, (1..=250).collect(), "every change effected");
    assert_eq!(effected.len(), 250, "once each: one idempotency key per change");
    // A request sent again after the crash carries the key it had.
    for (key, reqs) in by_key(&svc.seen()) {
        let orders: BTreeSet<i64> = reqs.iter().map(order_of).collect();
        assert_eq!(orders.len(), 1, "key {key} names one order");
    }
    let keys: BTreeSet<&str> = results.iter().filter_map(|r| r["idempotency_key"].as_str()).collect();
    assert_eq!(results.len(), 250, "one outcome per change on the response topic");
    assert_eq!(keys.len(), 250);
}

#[test]
fn a_replayed_dead_letter_is_effected_once_after_the_service_recovers() {
    let svc = Service::start(Box::new(|_: &Seen, _: &[Seen]| Reply::status(503)));
    let dir = data_dir("actions-dlq");
    let e = start(&dir, &[]);
    submit_charge(&e, &svc.url(), "'retry.initial' = '20 ms', 'retry.attempts' = '2', 'breaker.failures' = '1000', 'response.topic' = 'charge_results'");
    place(&e, 1..=4);
    let letters = wait_for("4 dead letters", Duration::from_secs(30), || {
        let (_, d) = get(&e, "/v1/dlq?limit=100");
        let l = d["dead_letters"].as_array().cloned().unwrap_or_default();
        (l.len() >= 4).then_some(l)
    });
    assert!(svc.effected().is_empty());
    let first_keys: BTreeSet<String> = svc.seen().iter().map(|s| s.key.clone()).collect();
    svc.set_rule(Box::new(|_: &Seen, _: &[Seen]| Reply::ok()));
    let (s, v) = post(&e, "/v1/dlq/replay", &json!({"source": "charge"}).to_string());
    assert_eq!(s, 200, "{v}");
    let done = v["replayed"].as_array().cloned().unwrap_or_default();
    assert_eq!(done.len(), 4, "{v}");
    assert!(done.iter().all(|d| d["result"] == "replayed"), "{v}");
    wait_for("4 effected", Duration::from_secs(20), || {
        (svc.effected().len() == 4).then_some(())
    });
    let effected: BTreeSet<String> = svc.effected().keys().cloned().collect();
    assert_eq!(effected, first_keys, "sent again with the keys they had");
    // Marked, not removed; not replayed twice unless asked.
    let (_, d) = get(&e, "/v1/dlq?limit=100");
    let listed = d["dead_letters"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 4, "{d}");
    assert!(
        listed.iter().all(|l| l["replays"].as_array().map(Vec::len) == Some(1)),
        "{d}"
    );
    // The CLI: nothing left to replay of the source.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["dlq", "replay", "--source", "charge", "--url", &e.url])
        .output()
        .expect("weir dlq replay runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(v["replayed"], json!([]), "{v}");
    let cursor = letters[0]["cursor"].as_u64().unwrap_or(0);
    let (_, v) = post(&e, "/v1/dlq/replay", &json!({"cursors": [cursor]}).to_string());
    assert_eq!(v["replayed"][0]["result"], "skipped", "{v}");
    let results = wait_for("8 outcomes", Duration::from_secs(10), || {
        let r = topic_events(&e, "charge_results");
        (r.len() >= 8).then_some(r)
    });
    assert_eq!(results.iter().filter(|r| r["ok"] == true).count(), 4);
    let (s, v) = post(&e, "/v1/dlq/replay", &json!({"cursors": [9999]}).to_string());
    assert_eq!(s, 400, "{v}");
}

#[test]
fn a_replayed_decode_failure_is_read_by_the_fixed_definition_once() {
    let dir = data_dir("actions-dlq-decode");
    let e = start(&dir, &[]);
    let job = |amount: &str| {
        format!(
            "CREATE TABLE payments (payment_id BIGINT, amount {amount}) WITH (connector = 'log', topic = 'payments', format = 'json');
CREATE MATERIALIZED VIEW paid AS SELECT payment_id, amount FROM payments;"
        )
    };
    submit(&e, "pay", &job("DECIMAL(12,2)"));
    let (s, v) = post(
        &e,
        "/v1/topics/payments/events",
        r#"[{"payment_id": 1, "amount": "10.00"}, {"payment_id": 2, "amount": "ten"}]"#,
    );
    assert_eq!(s, 200, "{v}");
    let letter = wait_for("the dead letter", Duration::from_secs(20), || {
        let (_, d) = get(&e, "/v1/dlq");
        d["dead_letters"].as_array().and_then(|l| l.first().cloned())
    });
    let cursor = letter["cursor"].as_u64().unwrap_or(0);
    let (_, v) = post(&e, "/v1/dlq/replay", &json!({"cursors": [cursor]}).to_string());
    assert_eq!(v["replayed"][0]["result"], "refused", "{v}");
    assert!(
        v["replayed"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("does not read it either"),
        "{v}"
    );
    let (s, v) = common::put(&e, "/v1/jobs/pay", json!({"sql": job("TEXT")}));
    assert_eq!(s, 200, "{v}");
    common::poll_rows(&e, "/v1/views/paid", Duration::from_secs(30), |rows| rows.len() == 2);
    let (_, v) = post(&e, "/v1/dlq/replay", &json!({"cursors": [cursor]}).to_string());
    assert_eq!(v["replayed"][0]["result"], "replayed", "{v}");
    assert!(
        v["replayed"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("nothing appended"),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, v) = get(&e, "/v1/views/paid");
    assert_eq!(common::rows_of(&v).len(), 2, "read once: {v}");
}

#[test]
fn a_clean_stop_keeps_waiting_requests_and_a_drop_forgets_them() {
    let port = common::free_port();
    let dir = data_dir("actions-stop");
    let mut e = start(&dir, &[]);
    submit_charge(
        &e,
        &format!("http://127.0.0.1:{port}"),
        "'retry.initial' = '50 ms', 'retry.max.delay' = '100 ms', 'retry.attempts' = '1000', 'breaker.failures' = '1000'",
    );
    place(&e, 1..=3);
    wait_for("attempts at the absent service", Duration::from_secs(20), || {
        (sink_status(&e, "charge", "charge")["http"]["retries"].as_u64() >= Some(3)).then_some(())
    });
    let status = common::interrupt(&mut e, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    drop(e);
    let svc = Service::start_on(port, Box::new(|_: &Seen, _: &[Seen]| Reply::ok()));
    let e = start(&dir, &[]);
    wait_for("the waiting requests delivered", Duration::from_secs(30), || {
        (svc.effected().len() == 3).then_some(())
    });
    let began = Instant::now();
    let (s, v) = common::parse(common::agent().delete(format!("{}/v1/jobs/charge", e.url)).call());
    assert_eq!(s, 204, "{v}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "dropping the job waited {:?}",
        began.elapsed()
    );
}

#[test]
fn a_request_that_fails_for_good_goes_to_the_fallback_url() {
    let svc = Service::start(Box::new(|s: &Seen, _: &[Seen]| {
        if s.path.starts_with("/fallback/") {
            Reply::ok()
        } else {
            Reply::status(500)
        }
    }));
    let dir = data_dir("actions-fallback-url");
    let e = start(&dir, &[]);
    submit_charge(
        &e,
        &svc.url(),
        &format!(
            "'retry.initial' = '20 ms', 'retry.attempts' = '2', 'breaker.failures' = '1000', 'fallback.url' = '{}/fallback/{{order_id}}', 'fallback.topic' = 'charge_failed', 'response.topic' = 'charge_results'",
            svc.url()
        ),
    );
    place(&e, 1..=3);
    let results = wait_for("3 outcomes", Duration::from_secs(30), || {
        let r = topic_events(&e, "charge_results");
        (r.len() >= 3).then_some(r)
    });
    for r in &results {
        assert_eq!(r["outcome"], "fallback_delivered", "{r}");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["attempts"], 3, "two at the URL, one at the fallback: {r}");
        assert!(r["reason"].as_str().unwrap_or("").contains("500"), "{r}");
    }
    let seen = svc.seen();
    let fallback: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with("/fallback/")).collect();
    assert_eq!(fallback.len(), 3, "{seen:?}");
    for f in &fallback {
        let first = seen
            .iter()
            .find(|s| s.key == f.key)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        assert!(first.starts_with("/charge/"), "the fallback gets the request's own key");
    }
    assert_eq!(
        topic_events(&e, "charge_failed").len(),
        3,
        "the URL failed for good: a fallback event each"
    );
    let (_, d) = get(&e, "/v1/dlq");
    assert_eq!(d["total"], 0, "taken by the fallback: no dead letter: {d}");
    let st = sink_status(&e, "charge", "charge");
    assert_eq!(st["http"]["fallback_delivered"], 3, "{st}");
}

#[test]
fn one_keys_requests_go_in_order_and_keys_go_concurrently() {
    // Each answer takes 40 ms; a keyed view's updates of a customer must
    // reach the service one after another, in the order of its changes.
    let svc = Service::start(Box::new(|_: &Seen, _: &[Seen]| {
        Reply::ok().after(Duration::from_millis(40))
    }));
    let dir = data_dir("actions-order");
    let e = start(&dir, &[]);
    submit(
        &e,
        "count",
        &format!(
            "{TABLE}
CREATE MATERIALIZED VIEW per_customer AS SELECT customer_id, count(*) AS n FROM placed GROUP BY customer_id;
CREATE SINK counted FROM per_customer WITH (connector = 'http', url = '{}/count/{{customer_id}}',
  changes = 'insert,update', 'max.in.flight' = '8');",
            svc.url()
        ),
    );
    // Five batches: each customer's count moves by one per batch.
    for b in 0..5 {
        place(&e, (b * 7 + 1)..=(b * 7 + 7));
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_for("the counts of 7 customers up to 5", Duration::from_secs(30), || {
        let seen = svc.seen();
        let fives = seen.iter().filter(|s| s.body["n"] == 5).count();
        (fives >= 7).then_some(())
    });
    let seen = svc.seen();
    let mut by_customer: BTreeMap<i64, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        by_customer.entry(order_of(s)).or_default().push(s);
    }
    assert_eq!(by_customer.len(), 7);
    for (c, reqs) in &by_customer {
        let ns: Vec<i64> = reqs.iter().filter_map(|s| s.body["n"].as_i64()).collect();
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "customer {c}'s counts in order: {ns:?}"
        );
        assert_eq!(ns.last(), Some(&5), "{c}: {ns:?}");
        assert_eq!(reqs[0].op, "insert");
        assert!(reqs[1..].iter().all(|s| s.op == "update"), "{c}");
        for w in reqs.windows(2) {
            assert!(
                w[1].at - w[0].at >= Duration::from_millis(38),
                "customer {c}: a request before the last was answered"
            );
        }
    }
    // Different customers overlap: some request arrived while another
    // customer's was still being answered.
    let overlapping = seen
        .windows(2)
        .any(|w| order_of(&w[0]) != order_of(&w[1]) && w[1].at - w[0].at < Duration::from_millis(40));
    assert!(overlapping, "keys go concurrently");
}
