//! `/metrics` (Prometheus text), `/healthz` (liveness) and `/readyz`
//! (ready once every job has caught up and the Kafka sources are connected
//! and caught up).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{error, Api};
use crate::engine::KafkaHealth;

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

pub async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.engine.metrics_text(),
    )
        .into_response()
}

pub async fn healthz() -> Response {
    Json(Status { status: "ok" }).into_response()
}

pub async fn readyz(State(api): State<Api>) -> Response {
    match api.engine.kafka_health() {
        Ok(()) => {}
        Err(KafkaHealth::Disconnected(why)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "source_disconnected", why)
        }
        Err(KafkaHealth::Behind(why)) => return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why),
    }
    if api.engine.ready() {
        Json(Status { status: "ready" }).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "jobs are still catching up with the log".into(),
        )
    }
}
