//! The HTTP API of DESIGN.md §5 (axum), one module per resource. Errors
//! are `{"error": {"code", "message"[, "line", "column"]}}` with a fitting
//! status; answers are typed structs.
//!
//! # Layout
//! - `jobs`: `/v1/jobs…` and `/v1/sql` (DROP statements).
//! - `topics`: `/v1/topics…`, ingest into and reads of the event log.
//! - `views`: `/v1/views…` and `/v1/query`, the read side.
//! - `dlq`: `/v1/dlq`.
//! - `graphql`: `/graphql`, the views through GraphQL.
//! - `feed`: a subscriber's bounded feed, for `changes` and `graphql`.
//! - `health`: `/metrics`, `/healthz`, `/readyz`.
//!
//! Helpers return `Result<_, Response>` so a handler can answer with the
//! finished error response; the size of axum's `Response` does not matter
//! on this path.
#![allow(clippy::result_large_err)]

mod changes;
mod dlq;
mod feed;
mod graphql;
mod health;
mod jobs;
mod topics;
mod views;

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use weir_dataflows::catalog::CatalogError;
use weir_dataflows::sql::PlanError;
use weir_queries::ReadError;

use crate::engine::{Engine, EngineError};

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    pub max_body: usize,
    graphql: graphql::LiveSchema,
}

impl Api {
    /// The API of `engine`, refusing bodies larger than `max_body` bytes.
    pub fn new(engine: Arc<Engine>, max_body: usize) -> Api {
        Api {
            graphql: graphql::LiveSchema::new(Arc::clone(&engine)),
            engine,
            max_body,
        }
    }
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/jobs", post(jobs::create).get(jobs::list))
        .route(
            "/v1/jobs/{name}",
            get(jobs::get).put(jobs::replace).delete(jobs::delete),
        )
        .route("/v1/jobs/{name}/rebuild", post(jobs::rebuild))
        .route("/v1/jobs/{name}/snapshot", post(jobs::snapshot))
        .route("/v1/snapshots", post(jobs::snapshot_all))
        .route("/v1/sql", post(jobs::run_statements))
        .route("/v1/topics", get(topics::list))
        .route("/v1/topics/{topic}/events", post(topics::append).get(topics::read))
        .route("/v1/topics/{topic}", post(topics::set_retention).get(topics::retention))
        .route("/v1/views", get(views::list))
        .route("/v1/views/{view}", get(views::read))
        .route("/v1/views/{view}/changes", get(changes::changes))
        .route("/v1/query", post(views::query))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/replay", post(dlq::replay))
        .route(graphql::PATH, get(graphql::get).post(graphql::post))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .with_state(api)
}

/// The error body every endpoint answers with.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u64>,
}

pub fn error(status: StatusCode, code: &str, message: String) -> Response {
    located_error(status, code, message, None)
}

/// An error about a place in the request's text (1-based line and column).
fn located_error(status: StatusCode, code: &str, message: String, at: Option<(u64, u64)>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
        },
    };
    (status, Json(body)).into_response()
}

/// What went wrong with a request, as every front end (REST, GraphQL)
/// reports it: a status, a stable code, a message and, for SQL, where.
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// 1-based line and column in the request's SQL.
    pub at: Option<(u64, u64)>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, message: String) -> Problem {
        Problem {
            status,
            code,
            message,
            at: None,
        }
    }
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Problem {
        use StatusCode as S;
        match e {
            EngineError::Catalog(e) => match e {
                CatalogError::Plan(p) => plan_problem(p),
                CatalogError::NotFound(m) => Problem::new(S::NOT_FOUND, "not_found", m),
                CatalogError::Conflict(m) => Problem::new(S::CONFLICT, "conflict", m),
                CatalogError::Internal(m) => Problem::new(S::INTERNAL_SERVER_ERROR, "internal", m),
            },
            EngineError::Read(e) => match e {
                ReadError::Plan(p) => plan_problem(p),
                ReadError::BadRequest { code, message } => Problem::new(S::BAD_REQUEST, code, message),
                ReadError::NotFound(m) => Problem::new(S::NOT_FOUND, "not_found", m),
                ReadError::Timeout(m) => Problem::new(S::GATEWAY_TIMEOUT, "timeout", m),
                ReadError::Replaced(v) => Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "replaced",
                    format!("view {v} was replaced again and again while being read; retry"),
                ),
                ReadError::Internal(m) => Problem::new(S::INTERNAL_SERVER_ERROR, "internal", m),
            },
            EngineError::BadRequest { code, message } => Problem::new(S::BAD_REQUEST, code, message),
            EngineError::Unavailable(m) => Problem::new(S::SERVICE_UNAVAILABLE, "storage_unavailable", m),
            EngineError::Internal(m) => Problem::new(S::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }
}

/// SQL that does not plan: 400 with the line and column.
fn plan_problem(p: PlanError) -> Problem {
    Problem {
        status: StatusCode::BAD_REQUEST,
        code: p.code,
        message: p.message,
        at: Some((p.line, p.column)),
    }
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let p = Problem::from(self);
        located_error(p.status, p.code, p.message, p.at)
    }
}

fn bad_request(code: &str, message: String) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

/// Answers with a typed body, or the error.
fn reply<T: Serialize>(status: StatusCode, result: Result<T, EngineError>) -> Response {
    match result {
        Ok(body) => (status, Json(body)).into_response(),
        Err(e) => e.into_response(),
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
    serde_json::from_slice(&bytes)
        .map_err(|e| bad_request("invalid_json", format!("line {}, column {}: {e}", e.line(), e.column())))
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, Response> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("missing_field", format!("the body needs a string field \"{name}\"")))
}

/// The `sql` string field of a JSON body.
async fn sql_body(body: Body, max: usize) -> Result<String, Response> {
    let v = json_body(body, max).await?;
    Ok(field(&v, "sql")?.to_string())
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
}

/// A number parameter, 400 when it is not one.
fn number<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, Response> {
    v.parse()
        .map_err(|_| bad_request("bad_parameter", format!("{k}={v} is not a number")))
}
