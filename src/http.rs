//! The HTTP API of DESIGN.md §5 (axum). Errors are
//! `{"error": {"code", "message"[, "line", "column"]}}` with a fitting status.
//!
//! Helpers return `Result<_, Response>` so a handler can answer with the
//! finished error response via `?`-like matches; the size of axum's
//! `Response` does not matter on this path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use weir_connectors::ingest::split_events;

use crate::engine::{Engine, EngineError, KafkaHealth, ReadOptions, Token, ViewAnswer};
use crate::shared::now_ms;

/// Reads wait at most this long for `after=` tokens unless told otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    pub max_body: usize,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{name}", get(get_job).put(replace_job).delete(delete_job))
        .route("/v1/jobs/{name}/rebuild", post(rebuild_job))
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{topic}/events", post(append_events).get(read_events))
        .route("/v1/views", get(list_views))
        .route("/v1/views/{view}", get(read_view))
        .route("/v1/query", post(query))
        .route("/v1/sql", post(run_statements))
        .route("/v1/dlq", get(dead_letters))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .with_state(api)
}

pub fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        match self {
            EngineError::Plan(p) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": p.code, "message": p.message, "line": p.line, "column": p.column}})),
            )
                .into_response(),
            EngineError::BadRequest { code, message } => error(StatusCode::BAD_REQUEST, code, message),
            EngineError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m),
            EngineError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", m),
            EngineError::Timeout(m) => error(StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            EngineError::Replaced(v) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "replaced",
                format!("view {v} was replaced again and again while being read; retry"),
            ),
            EngineError::Internal(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }
}

/// Reads a body up to the limit: 413 past it.
async fn body_bytes(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    to_bytes(body, limit).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    })
}

async fn json_body(body: Body, limit: usize) -> Result<Value, Response> {
    let bytes = body_bytes(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, Response> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("the body needs a string field \"{name}\""),
        )
    })
}

async fn create_job(State(api): State<Api>, body: Body) -> Response {
    let v = match json_body(body, api.max_body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (name, sql) = match (field(&v, "name"), field(&v, "sql")) {
        (Ok(n), Ok(s)) => (n.to_string(), s.to_string()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match api.engine.submit(&name, &sql, false) {
        Ok(job) => (StatusCode::CREATED, Json(job)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn replace_job(State(api): State<Api>, Path(name): Path<String>, body: Body) -> Response {
    let sql = match sql_body(body, api.max_body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.engine.submit(&name, &sql, true) {
        Ok(job) => Json(job).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/jobs/{name}/rebuild` with an optional `{"from": "earliest" |
/// milliseconds | "RFC 3339 time"}`: rebuilds the job's views from its
/// sources' history in the background; the old views serve until then.
async fn rebuild_job(State(api): State<Api>, Path(name): Path<String>, body: Body) -> Response {
    let bytes = match body_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let from = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v.get("from").cloned().unwrap_or(Value::Null),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("invalid JSON body: {e}"),
                )
            }
        }
    };
    let from = match &from {
        Value::Null => 0,
        Value::String(s) if s == "earliest" => 0,
        Value::Number(n) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
        Value::String(s) => match weir_operators::repr::parse_timestamp(s) {
            Some(ms) if ms >= 0 => ms as u64,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("from={s} is neither 'earliest', milliseconds since the epoch, nor an RFC 3339 time"),
                )
            }
        },
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                format!("from={other} is neither 'earliest', milliseconds since the epoch, nor an RFC 3339 time"),
            )
        }
    };
    match api.engine.rebuild(&name, from) {
        Ok(job) => (StatusCode::ACCEPTED, Json(job)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The `sql` string field of a JSON body.
async fn sql_body(body: Body, max: usize) -> Result<String, Response> {
    let v = json_body(body, max).await?;
    Ok(field(&v, "sql")?.to_string())
}

/// `DROP TABLE` / `DROP VIEW` statements (CREATE statements are jobs).
async fn run_statements(State(api): State<Api>, body: Body) -> Response {
    let sql = match sql_body(body, api.max_body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.engine.drop_objects(&sql) {
        Ok(done) => Json(done).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_jobs(State(api): State<Api>) -> Response {
    Json(api.engine.jobs()).into_response()
}

async fn get_job(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.engine.job(&name) {
        Ok(j) => Json(j).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_job(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.engine.drop_job(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn append_events(
    State(api): State<Api>,
    Path(topic): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let bytes = match body_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let params = parse_query(q.as_deref());
    let partition = match params.iter().find(|(k, _)| k == "partition") {
        None => None,
        Some((_, v)) => match v.parse::<u32>() {
            Ok(p) => Some(p),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("partition={v} is not a number"),
                )
            }
        },
    };
    if topic.starts_with("__") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_topic",
            format!("topic {topic} is the engine's own (names starting with __ are reserved: Kafka sources are copied into them)"),
        );
    }
    let events = match split_events(&bytes) {
        Ok(e) => e,
        Err(e) => {
            let mut body = json!({"error": {"code": "invalid_json", "message": e.to_string()}});
            if let Some((line, column)) = e.position() {
                body["error"]["line"] = json!(line);
                body["error"]["column"] = json!(column);
            }
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let log = api.engine.shared.log.clone();
    let n = events.len() as u64;
    // RocksDB's synced write blocks: keep it off the async threads.
    let result = tokio::task::spawn_blocking(move || log.append(&topic, partition, &events)).await;
    match result {
        Ok(Ok(a)) => {
            api.engine.shared.wake_workers();
            api.engine
                .shared
                .metrics
                .appended
                .with_label_values(&[a.topic.as_str()])
                .inc_by(n);
            (
                StatusCode::OK,
                Json(json!({
                    "topic": a.topic,
                    "partition": a.partition,
                    "first_offset": a.first_offset,
                    "last_offset": a.last_offset,
                    "count": n,
                    "token": Token::format(&a.topic, a.partition, a.last_offset),
                })),
            )
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "append_failed", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn list_topics(State(api): State<Api>) -> Response {
    Json(json!(api.engine.shared.log.topics())).into_response()
}

async fn read_events(State(api): State<Api>, Path(topic): Path<String>, RawQuery(q): RawQuery) -> Response {
    let params = parse_query(q.as_deref());
    let num = |k: &str, d: u64| -> Result<u64, Response> {
        match params.iter().find(|(n, _)| n == k) {
            None => Ok(d),
            Some((_, v)) => v.parse().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_parameter",
                    format!("{k}={v} is not a number"),
                )
            }),
        }
    };
    let (from, limit, partition) = match (num("from", 0), num("limit", 100), num("partition", 0)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b.min(10_000) as usize, c as u32),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let log = &api.engine.shared.log;
    if log.topic(&topic).is_none() {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no topic named {topic}"));
    }
    match log.read(&topic, partition, from, limit) {
        Ok(records) => {
            let events: Vec<Value> = records
                .iter()
                .map(|r| {
                    json!({
                        "offset": r.offset,
                        "seq": r.seq,
                        "tick": r.tick,
                        "event": serde_json::from_slice::<Value>(&r.payload).unwrap_or(Value::Null),
                    })
                })
                .collect();
            Json(json!({"topic": topic, "partition": partition, "events": events})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    }
}

async fn list_views(State(api): State<Api>) -> Response {
    Json(api.engine.views()).into_response()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
}

fn read_options(params: &[(String, String)]) -> Result<ReadOptions, Response> {
    let mut opts = ReadOptions {
        after: Vec::new(),
        as_of: None,
        timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
    };
    let number = |k: &str, v: &str| {
        v.parse::<u64>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_parameter",
                format!("{k}={v} is not a number"),
            )
        })
    };
    for (k, v) in params {
        match k.as_str() {
            "after" => opts.after.push(Token::parse(v).map_err(IntoResponse::into_response)?),
            "timeout_ms" => opts.timeout = Duration::from_millis(number(k, v)?.min(600_000)),
            "as_of" => opts.as_of = Some(number(k, v)?),
            _ => {}
        }
    }
    Ok(opts)
}

fn answer(a: ViewAnswer) -> Response {
    Json(json!({
        "view": a.view,
        "as_of": a.as_of,
        "lag_ms": now_ms().saturating_sub(a.as_of),
        "columns": a.columns,
        "rows": a.rows,
    }))
    .into_response()
}

async fn read_view(State(api): State<Api>, Path(view): Path<String>, RawQuery(q): RawQuery) -> Response {
    let params = parse_query(q.as_deref());
    let opts = match read_options(&params) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut limit = None;
    let mut filters = Vec::new();
    for (k, v) in &params {
        match k.as_str() {
            "after" | "timeout_ms" | "as_of" => {}
            "limit" => match v.parse() {
                Ok(l) => limit = Some(l),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        format!("limit={v} is not a number"),
                    )
                }
            },
            _ => filters.push((k.clone(), v.clone())),
        }
    }
    match api.engine.read_view(&view, &filters, limit, &opts).await {
        Ok(a) => answer(a),
        Err(e) => e.into_response(),
    }
}

async fn query(State(api): State<Api>, body: Body) -> Response {
    let v = match json_body(body, api.max_body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sql = match field(&v, "sql") {
        Ok(s) => s.to_string(),
        Err(r) => return r,
    };
    let mut params: Vec<(String, String)> = Vec::new();
    match v.get("after") {
        Some(Value::String(s)) => params.push(("after".into(), s.clone())),
        Some(Value::Array(a)) => {
            for t in a {
                if let Some(s) = t.as_str() {
                    params.push(("after".into(), s.to_string()));
                }
            }
        }
        _ => {}
    }
    if let Some(t) = v.get("timeout_ms").and_then(Value::as_u64) {
        params.push(("timeout_ms".into(), t.to_string()));
    }
    if let Some(t) = v.get("as_of").and_then(Value::as_u64) {
        params.push(("as_of".into(), t.to_string()));
    }
    let opts = match read_options(&params) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.engine.query(&sql, &opts).await {
        Ok(a) => answer(a),
        Err(e) => e.into_response(),
    }
}

async fn dead_letters(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let params = parse_query(q.as_deref());
    let after = params
        .iter()
        .find(|(k, _)| k == "after")
        .and_then(|(_, v)| v.parse().ok());
    let limit = params
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100usize)
        .min(10_000);
    let dl = api.engine.shared.store.dead_letters();
    let listed = match dl.list(after, limit) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let letters: Vec<Value> = listed
        .into_iter()
        .map(|(n, d)| json!({"cursor": n, "source": d.source, "position": d.position, "payload": d.payload, "reason": d.reason, "at_ms": d.at_ms}))
        .collect();
    Json(json!({"total": dl.len(), "by_source": dl.count_by_source(), "dead_letters": letters})).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    api.engine.refresh_view_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.engine.shared.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(api): State<Api>) -> Response {
    match api.engine.kafka_health() {
        Ok(()) => {}
        Err(KafkaHealth::Disconnected(why)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "source_disconnected", why)
        }
        Err(KafkaHealth::Behind(why)) => return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why),
    }
    if api.engine.ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "jobs are still catching up with the log".into(),
        )
    }
}
