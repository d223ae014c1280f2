//! `/v1/topics…`: ingest into the embedded log (durable before it
//! answers) and reads of it back (the event store).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use weir_connectors::ingest::split_events;
use weir_connectors::retention::RetentionPolicy;
use weir_queries::Token;

use super::{body_bytes, error, located_error, number, parse_query, reply, Api};
use crate::engine::Engine;

/// Where an ingest landed, with the token that reads can wait for.
#[derive(Serialize)]
struct Appended {
    topic: String,
    partition: u32,
    first_offset: u64,
    last_offset: u64,
    count: u64,
    token: String,
}

#[derive(Serialize)]
struct Events {
    topic: String,
    partition: u32,
    events: Vec<Event>,
}

#[derive(Serialize)]
struct Event {
    offset: u64,
    seq: u64,
    tick: u64,
    /// The event as JSON (null if the stored bytes are not JSON).
    event: Value,
}

pub async fn append(State(api): State<Api>, Path(topic): Path<String>, RawQuery(q): RawQuery, body: Body) -> Response {
    let bytes = match body_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let params = parse_query(q.as_deref());
    let partition = match params.iter().find(|(k, _)| k == "partition") {
        None => None,
        Some((k, v)) => match super::number::<u32>(k, v) {
            Ok(p) => Some(p),
            Err(r) => return r,
        },
    };
    if let Err(e) = Engine::check_writable(&topic) {
        return e.into_response();
    }
    let events = match split_events(&bytes) {
        Ok(e) => e,
        Err(e) => {
            return located_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                e.to_string(),
                e.position().map(|(l, c)| (l as u64, c as u64)),
            )
        }
    };
    let engine = api.engine.clone();
    let n = events.len() as u64;
    // RocksDB's synced write blocks: keep it off the async threads.
    let result = tokio::task::spawn_blocking(move || engine.append(&topic, partition, &events)).await;
    match result {
        Ok(Ok(a)) => Json(Appended {
            token: Token::format(&a.topic, a.partition, a.last_offset),
            topic: a.topic,
            partition: a.partition,
            first_offset: a.first_offset,
            last_offset: a.last_offset,
            count: n,
        })
        .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

pub async fn list(State(api): State<Api>) -> Response {
    Json(api.engine.topics()).into_response()
}

pub async fn read(State(api): State<Api>, Path(topic): Path<String>, RawQuery(q): RawQuery) -> Response {
    let params = parse_query(q.as_deref());
    let num = |k: &str, d: u64| -> Result<u64, Response> {
        match params.iter().find(|(n, _)| n == k) {
            None => Ok(d),
            Some((_, v)) => number(k, v),
        }
    };
    let (from, limit, partition) = match (num("from", 0), num("limit", 100), num("partition", 0)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b.min(10_000) as usize, c as u32),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    match api.engine.read_topic(&topic, partition, from, limit) {
        Ok(records) => Json(Events {
            topic,
            partition,
            events: records
                .iter()
                .map(|r| Event {
                    offset: r.offset,
                    seq: r.seq,
                    tick: r.tick,
                    event: serde_json::from_slice(&r.payload).unwrap_or(Value::Null),
                })
                .collect(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/topics/{topic}`: its retention, what it holds, what its readers
/// still need.
pub async fn retention(State(api): State<Api>, Path(topic): Path<String>) -> Response {
    reply(StatusCode::OK, api.engine.topic_retention(&topic))
}

/// `POST /v1/topics/{topic}` with `{"retention": {"age": "7 days", "bytes":
/// "10 GB", "compact": true}}` (any may be left out; `{"retention": null}`
/// keeps everything again): sets the topic's retention and trims by it.
pub async fn set_retention(State(api): State<Api>, Path(topic): Path<String>, body: Body) -> Response {
    let bytes = match body_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "bad_parameter", m);
    let v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("invalid JSON body: {e}"),
            )
        }
    };
    let Some(r) = v.get("retention") else {
        return bad("the body needs a \"retention\" field".into());
    };
    let mut policy = RetentionPolicy::default();
    if !r.is_null() {
        let Some(obj) = r.as_object() else {
            return bad("retention is {\"age\": …, \"bytes\": …} or null".into());
        };
        if let Some(unknown) = obj.keys().find(|k| !["age", "bytes", "compact"].contains(&k.as_str())) {
            return bad(format!(
                "unknown retention setting {unknown}: age, bytes and compact are known"
            ));
        }
        match obj.get("compact") {
            None => {}
            Some(Value::Bool(c)) => policy.compact = *c,
            Some(other) => return bad(format!("compact is true or false, not {other}")),
        }
        if let Some(age) = obj.get("age") {
            match age_ms(age) {
                Some(ms) => policy.max_age_ms = Some(ms),
                None => {
                    return bad(format!(
                        "age {age} is neither milliseconds nor a duration like '7 days'"
                    ))
                }
            }
        }
        if let Some(b) = obj.get("bytes") {
            match byte_count(b) {
                Some(n) => policy.max_bytes = Some(n),
                None => return bad(format!("bytes {b} is neither a number nor a size like '10 GB'")),
            }
        }
    }
    reply(StatusCode::OK, api.engine.set_retention(&topic, policy))
}

fn age_ms(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => weir_dataflows::sql::parse_duration_ms(s).and_then(|ms| u64::try_from(ms).ok()),
        _ => None,
    }
}

/// A number of bytes, or a size like `"10 GB"` (see
/// [`weir_dataflows::sql::parse_bytes`]).
fn byte_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => weir_dataflows::sql::parse_bytes(s),
        _ => None,
    }
}
