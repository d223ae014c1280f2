//! `/v1/jobs…`: submit, replace, inspect, drop and rebuild jobs; `/v1/sql`:
//! DROP statements.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{body_bytes, error, field, json_body, reply, sql_body, Api};

pub async fn create(State(api): State<Api>, body: Body) -> Response {
    let v = match json_body(body, api.max_body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (name, sql) = match (field(&v, "name"), field(&v, "sql")) {
        (Ok(n), Ok(s)) => (n.to_string(), s.to_string()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    reply(StatusCode::CREATED, api.engine.submit(&name, &sql, false))
}

pub async fn replace(State(api): State<Api>, Path(name): Path<String>, body: Body) -> Response {
    let sql = match sql_body(body, api.max_body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(StatusCode::OK, api.engine.submit(&name, &sql, true))
}

/// `POST /v1/jobs/{name}/rebuild` with an optional `{"from": "earliest" |
/// milliseconds | "RFC 3339 time"}`: rebuilds the job's views from its
/// sources' history in the background; the old views serve until then.
pub async fn rebuild(State(api): State<Api>, Path(name): Path<String>, body: Body) -> Response {
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
    let bad = |shown: String| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            format!("from={shown} is neither 'earliest', milliseconds since the epoch, nor an RFC 3339 time"),
        )
    };
    let from = match &from {
        Value::Null => 0,
        Value::String(s) if s == "earliest" => 0,
        Value::Number(n) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
        Value::String(s) => match weir_operators::repr::parse_timestamp(s) {
            Some(ms) if ms >= 0 => ms as u64,
            _ => return bad(s.clone()),
        },
        other => return bad(other.to_string()),
    };
    reply(StatusCode::ACCEPTED, api.engine.rebuild(&name, from))
}

/// `DROP TABLE` / `DROP VIEW` statements (CREATE statements are jobs).
pub async fn run_statements(State(api): State<Api>, body: Body) -> Response {
    let sql = match sql_body(body, api.max_body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(StatusCode::OK, api.engine.drop_objects(&sql))
}

pub async fn list(State(api): State<Api>) -> Response {
    Json(api.engine.jobs()).into_response()
}

pub async fn get(State(api): State<Api>, Path(name): Path<String>) -> Response {
    reply(StatusCode::OK, api.engine.job(&name))
}

pub async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.engine.drop_job(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/jobs/{name}/snapshot`: a snapshot of the job now (written in
/// the background; its status shows when it is committed).
pub async fn snapshot(State(api): State<Api>, Path(name): Path<String>) -> Response {
    reply(StatusCode::ACCEPTED, api.engine.snapshot(&name))
}

/// `POST /v1/snapshots`: a snapshot of every job now.
pub async fn snapshot_all(State(api): State<Api>) -> Response {
    (StatusCode::ACCEPTED, Json(api.engine.snapshot_all())).into_response()
}
