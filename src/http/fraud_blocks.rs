//! `GET /api/fraud/blocks` and `DELETE /api/fraud/blocks/{key}`: the fraud guard's running blocks,
//! and lifting one, behind the internal bearer token.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::AppState;
use super::extract::{AppJson, AppPath};
use super::problem::Problem;
use super::verifications::whole_seconds;
use crate::error::Error;
use crate::fraud::parse_block_key;
use crate::storage::FraudBlock;

/// Mounted with the other internal routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/fraud/blocks", get(blocks))
        .route("/api/fraud/blocks/{key}", delete(lift))
}

/// A destination the fraud guard blocks (or, in monitor mode, would have blocked).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FraudBlockView {
    /// `prefix` or `country`.
    #[schema(example = "prefix")]
    pub scope: String,
    #[schema(example = "+447400")]
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
    /// The unverified code messages that made the block.
    #[schema(example = 20)]
    pub unverified: u64,
    /// The verified ones at that moment.
    #[schema(example = 0)]
    pub verified: u64,
}

impl From<FraudBlock> for FraudBlockView {
    fn from(b: FraudBlock) -> Self {
        Self {
            scope: b.scope.as_str().to_owned(),
            key: b.key,
            since: whole_seconds(b.since),
            until: whole_seconds(b.until),
            unverified: b.unverified.max(0) as u64,
            verified: b.verified.max(0) as u64,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FraudBlockList {
    pub blocks: Vec<FraudBlockView>,
}

/// Internal: the running fraud blocks, newest first.
#[utoipa::path(
    get,
    path = "/api/fraud/blocks",
    tag = "internal",
    security(("internal_token" = [])),
    responses(
        (status = 200, description = "The running blocks", body = FraudBlockList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn blocks(State(state): State<AppState>) -> Result<AppJson<FraudBlockList>, Error> {
    let now = state.verifier.now();
    let blocks = state.storage.fraud_blocks(now, now).await?;
    Ok(AppJson(FraudBlockList {
        blocks: blocks.into_iter().map(FraudBlockView::from).collect(),
    }))
}

/// Internal: lifts a block and forgives the unverified messages counted against it so far.
#[utoipa::path(
    delete,
    path = "/api/fraud/blocks/{key}",
    tag = "internal",
    params(("key" = String, Path, description = "A prefix such as `+447400` (URL-encoded: `%2B447400`) or a country code such as `GB`")),
    security(("internal_token" = [])),
    responses(
        (status = 204, description = "Lifted"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`block_not_found`: no running block with that key; `not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn lift(
    State(state): State<AppState>,
    AppPath(key): AppPath<String>,
) -> Result<StatusCode, Error> {
    // A key that cannot name a block names no block: the same 404 as an unknown one.
    let (scope, key) = parse_block_key(&key).ok_or(Error::BlockNotFound)?;
    if !state
        .storage
        .lift_fraud_block(scope, &key, state.verifier.now())
        .await?
    {
        return Err(Error::BlockNotFound);
    }
    tracing::warn!(scope = scope.as_str(), %key, "fraud guard: block lifted by an operator");
    Ok(StatusCode::NO_CONTENT)
}
