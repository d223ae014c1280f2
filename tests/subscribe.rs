//! Live subscriptions (`GET /v1/views/{view}/changes`, server-sent events)
//! on the real binary, read by this test's own SSE parser: the snapshot
//! plus the changes, applied, equal the view read at every `as_of` an
//! event reports, with retractions, with a key filter, across a job
//! replace and after resuming with `Last-Event-ID`; a subscriber that does
//! not read is cut off with a final error while the engine's RSS stays
//! flat.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const JOB: &str = "
CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner BIGINT, balance BIGINT, note TEXT)
  WITH (connector = 'log', topic = 'accounts');
CREATE MATERIALIZED VIEW by_owner AS SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner;
CREATE MATERIALIZED VIEW acct AS SELECT id, owner, balance FROM accounts;
";

/// One server-sent event: its name, id and data.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: Value,
}

/// Opens `path` and hands each event to the returned channel until the
/// stream ends (then the channel closes).
fn subscribe(e: &Engine, path: &str, last_event_id: Option<u64>) -> mpsc::Receiver<Sse> {
    let mut req = agent().get(format!("{}{path}", e.url));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut resp = req.call().expect("subscribes");
    assert_eq!(resp.status(), 200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(resp.body_mut().as_reader());
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !data.is_empty() {
                    let ev = Sse {
                        event: std::mem::take(&mut event),
                        id: id.take(),
                        data: serde_json::from_str(&data).expect("JSON data"),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    rx
}

/// A multiset of rows (as JSON text) and how to apply an event's updates.
type State = BTreeMap<String, i64>;

fn apply(state: &mut State, updates: &Value) {
    for u in updates.as_array().expect("updates") {
        let row = u["row"].to_string();
        let n = state.entry(row.clone()).or_default();
        *n += u["diff"].as_i64().expect("a diff");
        if *n == 0 {
            state.remove(&row);
        }
    }
}

fn view_at(e: &Engine, view: &str, filter: &str, as_of: u64) -> State {
    let (s, v) = get(e, &format!("/v1/views/{view}?limit=100000&as_of={as_of}{filter}"));
    assert_eq!(s, 200, "{view} as of {as_of}: {v}");
    let mut state = State::new();
    for r in rows_of(&v) {
        *state.entry(r.to_string()).or_default() += 1;
    }
    state
}

/// Applies events from `rx` to `state` until `until` returns true for an
/// event, checking the state against the view at each event's `as_of`;
/// returns the events checked and the last id.
fn follow(
    e: &Engine,
    rx: &mpsc::Receiver<Sse>,
    view: &str,
    filter: &str,
    state: &mut State,
    until: impl Fn(&Sse, &State) -> bool,
) -> (usize, Option<u64>) {
    let (mut checked, mut last) = (0, None);
    let mut in_snapshot = false;
    loop {
        let ev = rx.recv_timeout(Duration::from_secs(20)).expect("an event");
        match ev.event.as_str() {
            "snapshot" => {
                // A snapshot comes in chunks; the last one says so.
                if !in_snapshot {
                    state.clear();
                }
                apply(state, &ev.data["updates"]);
                in_snapshot = ev.data["last"] != json!(true);
                if in_snapshot {
                    assert_eq!(ev.id, None, "only a snapshot's last chunk has an id");
                    continue;
                }
            }
            "changes" => apply(state, &ev.data["updates"]),
            "reset" => {}
            other => panic!("unexpected event {other}: {:?}", ev.data),
        }
        if let Some(as_of) = ev.data["as_of"].as_u64() {
            assert_eq!(ev.id, Some(as_of));
            assert_eq!(*state, view_at(e, view, filter, as_of), "{view}{filter} as of {as_of}");
            checked += 1;
            last = Some(as_of);
        }
        if until(&ev, state) {
            return (checked, last);
        }
    }
}

fn ingest(e: &Engine, rng: &mut rand::rngs::StdRng, live: &mut BTreeMap<i64, ()>) -> String {
    let mut events = Vec::new();
    for _ in 0..12 {
        let id = rng.random_range(0..30);
        if live.contains_key(&id) && rng.random_range(0..3) == 0 {
            live.remove(&id);
            events.push(json!({"id": id, "__op": "delete"}).to_string());
        } else {
            live.insert(id, ());
            events.push(
                json!({"id": id, "owner": rng.random_range(0..5), "balance": rng.random_range(-20..300), "note": "n"})
                    .to_string(),
            );
        }
    }
    let (s, a) = post(e, "/v1/topics/accounts/events", &events.join("\n"));
    assert_eq!(s, 200, "{a}");
    a["token"].as_str().expect("a token").to_string()
}

#[test]
fn a_subscription_applied_to_its_snapshot_equals_the_view_at_every_as_of() {
    let dir = data_dir("subscribe");
    let e = start(&dir, &["--workers", "2"]);
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "bank", "sql": JOB}).to_string());
    assert_eq!(s, 201, "{body}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut live = BTreeMap::new();
    let token = ingest(&e, &mut rng, &mut live);
    let _ = get(&e, &format!("/v1/views/by_owner?after={token}"));
    let all = subscribe(&e, "/v1/views/by_owner/changes", None);
    let owner = subscribe(&e, "/v1/views/acct/changes?owner=3", None);
    let (mut all_state, mut owner_state) = (State::new(), State::new());
    let is_snapshot = |ev: &Sse, _: &State| ev.event == "snapshot";
    follow(&e, &all, "by_owner", "", &mut all_state, is_snapshot);
    follow(&e, &owner, "acct", "&owner=3", &mut owner_state, is_snapshot);
    let mut checked = 0;
    for round in 0..20 {
        let token = ingest(&e, &mut rng, &mut live);
        let (s, v) = get(&e, &format!("/v1/views/by_owner?limit=1&after={token}"));
        assert_eq!(s, 200, "{v}");
        let at = v["as_of"].as_u64().expect("an as_of");
        if round == 10 {
            // Replace the job: the subscription resets to the new version.
            let (s, body) = put(
                &e,
                "/v1/jobs/bank",
                json!({"sql": format!("{JOB} CREATE MATERIALIZED VIEW owners AS SELECT DISTINCT owner FROM accounts;")}),
            );
            assert!(s == 200 || s == 202, "{s} {body}");
            let (n, _) = follow(&e, &all, "by_owner", "", &mut all_state, |ev, _| ev.event == "snapshot");
            checked += n;
            let token = ingest(&e, &mut rng, &mut live);
            let _ = get(&e, &format!("/v1/views/by_owner?after={token}"));
            continue;
        }
        // Only times with changes get an event: follow until the state is
        // the view's after this round's write.
        let target = view_at(&e, "by_owner", "", at);
        if target != all_state {
            checked += follow(&e, &all, "by_owner", "", &mut all_state, |_, st| *st == target).0;
        }
    }
    assert!(checked >= 10, "only {checked} events checked");
    // The filtered subscription saw its own rows only, and agrees too.
    while let Ok(ev) = owner.recv_timeout(Duration::from_millis(500)) {
        if ev.event == "snapshot" {
            owner_state.clear();
        }
        if ev.event == "snapshot" || ev.event == "changes" {
            apply(&mut owner_state, &ev.data["updates"]);
            for row in owner_state.keys() {
                assert!(row.contains("\"owner\":3"), "{row}");
            }
        }
    }
    let (s, v) = get(&e, "/v1/views/acct?owner=3&limit=1");
    assert_eq!(s, 200);
    let at = v["as_of"].as_u64().expect("an as_of");
    assert_eq!(owner_state, view_at(&e, "acct", "&owner=3", at));

    // Resume: a new connection with the last id gets the changes after it,
    // without a snapshot.
    let mut last = None;
    while let Ok(ev) = all.recv_timeout(Duration::from_millis(500)) {
        if ev.event == "changes" {
            apply(&mut all_state, &ev.data["updates"]);
        }
        last = ev.id.or(last);
    }
    drop(all);
    let last = last.unwrap_or_else(|| {
        let (_, v) = get(&e, "/v1/views/by_owner?limit=1");
        v["as_of"].as_u64().expect("an as_of")
    });
    let token = ingest(&e, &mut rng, &mut live);
    let (_, v) = get(&e, &format!("/v1/views/by_owner?limit=1&after={token}"));
    let at = v["as_of"].as_u64().expect("an as_of");
    let resumed = subscribe(&e, "/v1/views/by_owner/changes", Some(last));
    let first = resumed.recv_timeout(Duration::from_secs(20)).expect("an event");
    if view_at(&e, "by_owner", "", at) != all_state {
        assert_eq!(first.event, "changes", "resumed without a snapshot: {:?}", first.data);
        assert!(first.id.is_some_and(|t| t > last));
        apply(&mut all_state, &first.data["updates"]);
        let target = view_at(&e, "by_owner", "", at);
        if all_state != target {
            follow(&e, &resumed, "by_owner", "", &mut all_state, |_, st| *st == target);
        }
    }
    assert_eq!(all_state, view_at(&e, "by_owner", "", at));
    // A resume point the view no longer keeps: a reset, then a snapshot.
    let old = subscribe(&e, "/v1/views/by_owner/changes?from_as_of=1", None);
    let first = old.recv_timeout(Duration::from_secs(20)).expect("an event");
    assert_eq!(first.event, "reset", "{:?}", first.data);
    assert_eq!(
        old.recv_timeout(Duration::from_secs(20)).expect("an event").event,
        "snapshot"
    );
    // Bad requests are refused before the stream starts.
    let (s, v) = get(&e, "/v1/views/nope/changes");
    assert_eq!(s, 404, "{v}");
    let (s, v) = get(&e, "/v1/views/by_owner/changes?colour=red");
    assert_eq!(s, 400, "{v}");
}

fn rss_kib(e: &Engine) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", e.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Upserts of 1000 accounts with a long note, 20 batches; waits until the
/// views have caught up with them.
fn heavy(e: &Engine, round: u64) {
    let note = "x".repeat(200);
    for b in 0..20 {
        let body: Vec<String> = (0..1000)
            .map(|id| json!({"id": id, "owner": (id + b + round) % 7, "balance": b, "note": note}).to_string())
            .collect();
        let (s, a) = post(e, "/v1/topics/accounts/events", &body.join("\n"));
        assert_eq!(s, 200, "{a}");
        if b == 19 {
            let token = a["token"].as_str().expect("a token");
            let (s, v) = get(e, &format!("/v1/views/acct?limit=1&after={token}&timeout_ms=60000"));
            assert_eq!(s, 200, "{v}");
        }
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_memory_stays_flat() {
    let dir = data_dir("subscribe-slow");
    let e = start(&dir, &["--workers", "2"]);
    // A view with the long note: 20 rounds of changes to it are some 220 MB
    // of events, which an unbounded buffer would hold.
    let sql = format!("{JOB} CREATE MATERIALIZED VIEW acct_notes AS SELECT id, owner, balance, note FROM accounts;");
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "bank", "sql": sql}).to_string());
    assert_eq!(s, 201, "{body}");
    // Warm up with the same load (the views keep 2 s of changes), then
    // measure.
    for round in 0..10 {
        heavy(&e, round);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let before = rss_kib(&e);
    // A subscriber that asks and then never reads.
    let addr = e.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&addr).expect("connects");
    write!(
        slow,
        "GET /v1/views/acct_notes/changes HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("asks");
    for round in 10..30 {
        heavy(&e, round);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let after = rss_kib(&e);
    eprintln!("RSS before {before} KiB, after {after} KiB");
    // What may grow meanwhile: the subscriber's 8 MiB, and RocksDB's
    // memtable (up to 64 MiB) with the 100 MB of log written.
    assert!(
        after < before + 128 * 1024,
        "RSS grew from {before} to {after} KiB with a subscriber that does not read"
    );
    let metrics = metrics_text(&e);
    assert!(
        metrics.contains("weir_slow_subscribers_dropped_total{view=\"acct_notes\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("subscri"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // What it was sent ends with the error, and then the response ends (the
    // last chunk of its chunked body).
    slow.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut text = Vec::new();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    while !text.ends_with(b"\r\n0\r\n\r\n") {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the response did not end within {:?}: {e}", started.elapsed()),
        }
    }
    let text = String::from_utf8_lossy(&text);
    let tail = &text[text.len().saturating_sub(2000)..];
    assert!(
        tail.contains("event: error") && tail.contains("slow_consumer"),
        "{tail}"
    );
}

#[test]
fn a_large_snapshot_comes_in_chunks_that_add_up_to_the_view() {
    let dir = data_dir("subscribe-chunks");
    let e = start(&dir, &["--workers", "2"]);
    let sql = "CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT) WITH (connector = 'log', topic = 'big');
               CREATE MATERIALIZED VIEW big_rows AS SELECT id, v FROM big;";
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "big", "sql": sql}).to_string());
    assert_eq!(s, 201, "{body}");
    let rows: Vec<String> = (0..2500).map(|i| json!({"id": i, "v": i * 3}).to_string()).collect();
    let (s, a) = post(&e, "/v1/topics/big/events", &rows.join("\n"));
    assert_eq!(s, 200, "{a}");
    let token = a["token"].as_str().expect("a token").to_string();
    let (s, _) = get(&e, &format!("/v1/views/big_rows?limit=1&after={token}"));
    assert_eq!(s, 200);
    let rx = subscribe(&e, "/v1/views/big_rows/changes", None);
    let mut state = State::new();
    let mut chunks = 0;
    loop {
        let ev = rx.recv_timeout(Duration::from_secs(20)).expect("an event");
        assert_eq!(ev.event, "snapshot", "{:?}", ev.data);
        apply(&mut state, &ev.data["updates"]);
        chunks += 1;
        if ev.data["last"] == json!(true) {
            let as_of = ev.id.expect("the last chunk has the id");
            assert_eq!(state, view_at(&e, "big_rows", "", as_of));
            break;
        }
    }
    assert_eq!(state.len(), 2500);
    assert!(chunks >= 3, "{chunks} chunks");
}
