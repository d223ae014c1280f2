//! `/v1/dlq`: the dead letters, oldest first, with counts per source.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use weir_connectors::dead_letters::Position;

use super::{parse_query, Api};

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
            })
            .collect(),
    })
    .into_response()
}
