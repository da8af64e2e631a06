//! `POST /api/sms/send`: free-text SMS for other backends, behind a bearer token.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::routing::post;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AppState;
use super::extract::AppJson;
use super::verifications::parse_phone;
use crate::error::Error;

/// Longest message: Twilio's limit for one (multi-segment) SMS body.
pub const MAX_MESSAGE_CHARS: usize = 1600;

/// Mounted only when `INTERNAL_API_TOKEN` is set; otherwise the path is a plain 404.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/sms/send", post(send_sms))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSmsRequest {
    pub phone_number: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendSmsResponse {
    pub status: String,
    pub phone_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// Compares the bearer token in constant time, so its bytes cannot be guessed from response times.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.config.internal_api_token else {
        return false;
    };
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into()
}

async fn send_sms(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<AppJson<SendSmsRequest>, Error>,
) -> Result<AppJson<SendSmsResponse>, Error> {
    // The token is checked before the body is looked at: callers without it learn nothing.
    if !authorized(&state, &headers) {
        return Err(Error::Unauthorized);
    }
    let AppJson(body) = body?;
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
    let sent = sender.send_message(&phone, &body.message).await?;
    tracing::info!(phone = %phone.masked(), provider = sender.name(), "custom SMS sent");
    Ok(AppJson(SendSmsResponse {
        status: "sent".into(),
        phone_number: phone.to_string(),
        provider_message_id: sent.provider_message_id,
    }))
}
