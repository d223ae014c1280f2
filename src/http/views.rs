//! `/v1/views…` and `/v1/query`: the read side, answered at one `as_of`
//! with read-your-writes.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use weir_connectors::decode::JsonRow;
use weir_queries::reader::{ReadOptions, ViewAnswer};
use weir_queries::Token;

use super::{field, json_body, number, parse_query, Api};
use crate::engine::EngineError;
use crate::shared::now_ms;

/// Reads wait at most this long for `after` tokens and `as_of` unless told
/// otherwise (REST and GraphQL alike).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

#[derive(Serialize)]
struct Answer<'a> {
    view: &'a str,
    as_of: u64,
    /// How far behind the wall clock `as_of` is.
    lag_ms: u64,
    columns: Vec<&'a str>,
    /// Written straight from the rows, without building JSON values first.
    rows: Vec<JsonRow<'a>>,
}

fn answer(result: Result<ViewAnswer, EngineError>) -> Response {
    match result {
        Ok(a) => Json(Answer {
            view: &a.view,
            as_of: a.as_of,
            lag_ms: now_ms().saturating_sub(a.as_of),
            columns: a.schema.columns.iter().map(|c| c.name.as_str()).collect(),
            rows: a.rows.iter().map(|r| JsonRow(r, &a.schema)).collect(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn list(State(api): State<Api>) -> Response {
    Json(api.engine.views()).into_response()
}

/// `after` (repeatable), `timeout_ms` and `as_of`; other parameters are
/// left to the caller.
fn read_options(params: &[(String, String)]) -> Result<ReadOptions, Response> {
    let mut opts = ReadOptions {
        after: Vec::new(),
        as_of: None,
        timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
    };
    for (k, v) in params {
        match k.as_str() {
            "after" => opts.after.push(
                Token::parse(v)
                    .map_err(EngineError::from)
                    .map_err(IntoResponse::into_response)?,
            ),
            "timeout_ms" => opts.timeout = Duration::from_millis(number::<u64>(k, v)?.min(600_000)),
            "as_of" => opts.as_of = Some(number(k, v)?),
            _ => {}
        }
    }
    Ok(opts)
}

pub async fn read(State(api): State<Api>, Path(view): Path<String>, RawQuery(q): RawQuery) -> Response {
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
            "limit" => match number(k, v) {
                Ok(l) => limit = Some(l),
                Err(r) => return r,
            },
            _ => filters.push((k.clone(), v.clone())),
        }
    }
    answer(api.engine.read_view(&view, &filters, limit, &opts).await)
}

pub async fn query(State(api): State<Api>, body: Body) -> Response {
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
    answer(api.engine.query(&sql, &opts).await)
}
