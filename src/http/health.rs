//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus text format.
async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    match tokio::time::timeout(Duration::from_secs(2), state.storage.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: database error");
            Err(Error::StorageUnavailable)
        }
        Err(_) => {
            tracing::warn!("readiness check: database did not answer within 2 s");
            Err(Error::StorageUnavailable)
        }
    }
}
