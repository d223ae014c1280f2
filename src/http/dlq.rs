//! `/v1/dlq`: the dead letters, oldest first, with counts per source;
//! `POST /v1/dlq/replay`: send selected ones through again.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use weir_connectors::dead_letters::Position;

use crate::engine::ReplaySelection;

use super::{error, json_body, parse_query, Api};

#[derive(Serialize)]
struct Letters {
    total: u64,
    by_source: BTreeMap<String, u64>,
    dead_letters: Vec<Letter>,
}

#[derive(Serialize)]
struct Letter {
    /// Pass as `after=` to page on.
    cursor: u64,
    source: String,
    position: Option<Position>,
    payload: String,
    reason: String,
    at_ms: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replays: Vec<weir_connectors::dead_letters::Replay>,
}

pub async fn list(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
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
    let page = match api.engine.dead_letters(after, limit) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    Json(Letters {
        total: page.total,
        by_source: page.by_source,
        dead_letters: page
            .letters
            .into_iter()
            .map(|(n, d)| Letter {
                cursor: n,
                source: d.source,
                position: d.position,
                payload: d.payload,
                reason: d.reason,
                at_ms: d.at_ms,
                replays: d.replays,
            })
            .collect(),
    })
    .into_response()
}

/// `POST /v1/dlq/replay` `{"cursors": [3, 4]}` or `{"source": "charge",
/// "limit": 100}` (letters replayed before only with `"again": true`):
/// what became of each letter.
pub async fn replay(State(api): State<Api>, body: Body) -> Response {
    let v = match json_body(body, api.max_body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cursors = match &v["cursors"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => match a.iter().map(|c| c.as_u64()).collect::<Option<Vec<u64>>>() {
            Some(c) => c,
            None => return bad("\"cursors\" must be an array of cursors (whole numbers)"),
        },
        _ => return bad("\"cursors\" must be an array of cursors (whole numbers)"),
    };
    let source = match &v["source"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        _ => return bad("\"source\" must be the name of a table or sink"),
    };
    if cursors.is_empty() && source.is_none() {
        return bad("name the letters to replay: \"cursors\" or \"source\"");
    }
    let sel = ReplaySelection {
        cursors,
        source,
        limit: v["limit"].as_u64().map_or(1000, |l| l.min(100_000) as usize),
        again: v["again"].as_bool().unwrap_or(false),
    };
    let engine = api.engine.clone();
    match tokio::task::spawn_blocking(move || engine.replay_dead_letters(&sel)).await {
        Ok(Ok(done)) => Json(serde_json::json!({ "replayed": done })).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message.to_string())
}
