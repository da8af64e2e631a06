//! `POST /webhooks/twilio/status`: Twilio's delivery reports, signed with the account's auth token.
//!
//! Not under `/api/`: Twilio calls from many addresses, so the per-IP request rate does not apply.
//! What keeps a flood of forged reports cheap is the order: the signature is checked before any
//! field is read and before storage is touched, so a forgery costs one HMAC and no database work.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};

use super::AppState;
use super::problem::Problem;
use crate::domain::MessageStatus;
use crate::error::Error;
use crate::signature;

/// Where Twilio posts status callbacks; `PUBLIC_BASE_URL` followed by this is the `StatusCallback`.
pub const TWILIO_STATUS_PATH: &str = "/webhooks/twilio/status";

/// Twilio's callbacks are a few dozen form fields; the API's 4 KiB is too tight for some of them.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 16 * 1024;

/// The provider whose records Twilio's callbacks update: only the Messaging sender asks for them.
const PROVIDER: &str = "twilio-messaging";

const X_TWILIO_SIGNATURE: &str = "x-twilio-signature";

/// What checking Twilio's signature takes: the auth token it signs with, and the URL it called
/// (ours as Twilio sees it, not as a proxy forwarded it).
pub struct TwilioWebhook {
    pub auth_token: SecretString,
    pub public_base_url: String,
}

/// Mounted only when `PUBLIC_BASE_URL` (and Twilio credentials) are set; otherwise a plain 404.
pub fn router() -> Router<AppState> {
    Router::new().route(
        TWILIO_STATUS_PATH,
        post(twilio_status).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES)),
    )
}

/// A delivery report from Twilio (form-encoded, as Twilio sends it).
#[utoipa::path(
    post,
    path = "/webhooks/twilio/status",
    tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's status callback: `MessageSid` + `MessageStatus` (+ `ErrorCode`), or `CallSid` + `CallStatus`"),
    params(("X-Twilio-Signature" = String, Header, description = "base64(HMAC-SHA1(auth token, URL ‖ sorted parameters))")),
    responses(
        (status = 204, description = "Taken (also for an unknown message or status, which is ignored)"),
        (status = 403, description = "`invalid_signature`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: `PUBLIC_BASE_URL` or the Twilio credentials are not set", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn twilio_status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Error> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge {
                limit: MAX_WEBHOOK_BODY_BYTES,
            }
        } else {
            Error::InvalidRequest("The request body could not be read.".into())
        }
    })?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(hook) = state.twilio_webhook.as_deref() else {
        return Err(Error::RouteNotFound);
    };
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", hook.public_base_url);
    let signed = headers
        .get(X_TWILIO_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|header| {
            signature::twilio::is_valid(
                hook.auth_token.expose_secret().as_bytes(),
                &url,
                &params,
                header,
            )
        });
    if !signed {
        return Err(Error::InvalidSignature);
    }

    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let report = match (field("MessageSid"), field("MessageStatus")) {
        (Some(sid), Some(status)) => Some((sid, MessageStatus::from_twilio_message(status))),
        _ => match (field("CallSid"), field("CallStatus")) {
            (Some(sid), Some(status)) => Some((sid, MessageStatus::from_twilio_call(status))),
            _ => None,
        },
    };
    // Signed by Twilio but nothing we track (an inbound status, a field set we do not know):
    // answering an error would only make Twilio log failures for something we chose to ignore.
    let Some((sid, Some(status))) = report else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let error_code = field("ErrorCode").filter(|c| !c.is_empty());
    let change = state
        .storage
        .report_status(PROVIDER, sid, status, error_code, state.verifier.now())
        .await?;
    if let Some(change) = change {
        crate::metrics::message_status(&change);
    }
    Ok(StatusCode::NO_CONTENT)
}
