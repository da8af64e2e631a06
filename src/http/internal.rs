//! `POST /api/sms/send`: free-text SMS for other backends, behind a bearer token.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::AppState;
use super::extract::AppJson;
use super::problem::Problem;
use super::verifications::parse_phone;
use crate::error::Error;

/// Longest message: Twilio's limit for one (multi-segment) SMS body.
pub const MAX_MESSAGE_CHARS: usize = 1600;

/// Mounted only when `INTERNAL_API_TOKEN` is set; otherwise the path is a plain 404.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/sms/send", post(send_sms))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSmsRequest {
    #[schema(example = "+12125551234", max_length = 64)]
    pub phone_number: String,
    /// 1 to 1,600 characters.
    #[schema(
        example = "Your delivery is on the way!",
        min_length = 1,
        max_length = 1600
    )]
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendSmsResponse {
    #[schema(example = "sent")]
    pub status: String,
    #[schema(example = "+12125551234")]
    pub phone_number: String,
    /// The message record's id.
    pub message_id: uuid::Uuid,
    /// Twilio's message SID; absent with the console provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "SM00000000000000000000000000000001")]
    pub provider_message_id: Option<String>,
}

/// The layer over every internal route (this one, `lookups`): the bearer token, compared in
/// constant time, before any extractor reads the path, query or body, so a caller without it learns
/// nothing, not even whether its input parses.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.settings.internal_api_token else {
        return Error::Unauthorized.into_response();
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes())) => {
            next.run(request).await
        }
        _ => Error::Unauthorized.into_response(),
    }
}

/// Internal: send a custom SMS (other backends only). Exists only when `INTERNAL_API_TOKEN` is set.
#[utoipa::path(
    post,
    path = "/api/sms/send",
    tag = "internal",
    request_body = SendSmsRequest,
    security(("internal_token" = [])),
    responses(
        (status = 200, description = "Sent", body = SendSmsResponse),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`country_not_allowed`; `destination_blocked`: the fraud guard blocks the number's prefix or country", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`, `invalid_phone_number`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, `too_many_sends` (Twilio's limit)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`sms_provider_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn send_sms(
    State(state): State<AppState>,
    AppJson(body): AppJson<SendSmsRequest>,
) -> Result<AppJson<SendSmsResponse>, Error> {
    let phone = parse_phone(&body.phone_number)?;
    state.verifier.check_country(&phone)?;
    let chars = body.message.chars().count();
    if chars == 0 || chars > MAX_MESSAGE_CHARS {
        return Err(Error::InvalidRequest(format!(
            "`message` must be 1 to {MAX_MESSAGE_CHARS} characters."
        )));
    }
    let sender = state
        .messages
        .as_ref()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("no sender for free-text messages")))?;
    let sent = state
        .verifier
        .send_message(sender, &phone, &body.message)
        .await?;
    tracing::info!(phone = %phone.masked(), provider = sent.provider, "custom SMS sent");
    Ok(AppJson(SendSmsResponse {
        status: "sent".into(),
        phone_number: phone.to_string(),
        message_id: sent.message_id,
        provider_message_id: sent.sent.provider_message_id,
    }))
}
