//! GraphQL (`/graphql`) on the real binary, checked by an independent
//! client (`tests/graphql_client.py`: urllib, graphql-core, websockets):
//! the served schema against the catalog, queries against the client's own
//! recomputation of the views from the events it ingests, one operation's
//! fields at one time, errors with locations, and subscriptions over
//! `graphql-transport-ws` equal to the view at every time they report,
//! with a key filter, after resuming, across a job replace (the schema
//! follows it without a restart) and a drop.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

const JOB: &str = "
CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner BIGINT, balance BIGINT, note TEXT)
  WITH (connector = 'log', topic = 'accounts');
CREATE MATERIALIZED VIEW by_owner AS SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner;
CREATE MATERIALIZED VIEW acct AS SELECT id, owner, balance FROM accounts;
";

fn run_client(workers: &str, seed: u64) {
    let dir = data_dir(&format!("graphql-{workers}"));
    let e = start(&dir, &["--workers", workers]);
    let (s, body) = post(&e, "/v1/jobs", &json!({"name": "bank", "sql": JOB}).to_string());
    assert_eq!(s, 201, "{body}");
    wait_ready(&e, Duration::from_secs(30));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphql_client.py");
    let out = Command::new("python3")
        .args([script, &e.url, "bank", &seed.to_string()])
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs graphql-core and websockets)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the GraphQL client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all ok"), "{stdout}\n{stderr}");
}

#[test]
fn graphql_answers_an_independent_client_with_one_worker() {
    run_client("1", 7);
}

#[test]
fn graphql_answers_an_independent_client_with_three_workers() {
    run_client("3", 11);
}
