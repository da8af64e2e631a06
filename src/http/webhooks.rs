//! `POST /webhooks/twilio/status`: Twilio's delivery reports, signed with the account's auth token;
//! `POST /webhooks/sms/status`: our gateway's, signed per Standard Webhooks.
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
use serde::Deserialize;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::problem::Problem;
use crate::domain::MessageStatus;
use crate::error::Error;
use crate::signature;
use crate::signature::standard_webhooks;
use crate::storage::StatusChange;

/// Where Twilio posts status callbacks; `PUBLIC_BASE_URL` followed by this is the `StatusCallback`.
pub const TWILIO_STATUS_PATH: &str = "/webhooks/twilio/status";

/// Where the webhook provider's gateway posts delivery reports.
pub const GATEWAY_STATUS_PATH: &str = "/webhooks/sms/status";

/// Twilio's callbacks are a few dozen form fields; the API's 4 KiB is too tight for some of them.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 16 * 1024;

/// The provider whose records Twilio's callbacks update: only the Messaging sender asks for them.
const PROVIDER: &str = "twilio-messaging";

/// The provider whose records the gateway's reports update.
const GATEWAY_PROVIDER: &str = "webhook";

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

/// Mounted only when the webhook is one of the providers; otherwise a plain 404.
pub fn gateway_router() -> Router<AppState> {
    Router::new().route(
        GATEWAY_STATUS_PATH,
        post(gateway_status).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES)),
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
        (status = 204, description = "Taken (also for an unknown message or status, which is ignored); an undelivered code has had its automatic fallback, if `CHANNEL_FALLBACK` calls for one"),
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
    let body = read_body(body)?;
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
        fall_back(&state, change).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Error> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge {
                limit: MAX_WEBHOOK_BODY_BYTES,
            }
        } else {
            Error::InvalidRequest("The request body could not be read.".into())
        }
    })
}

/// What the gateway reports about one message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GatewayStatusReport {
    /// Our `message_id`, as sent in the provider's request (and its `webhook-id`).
    pub message_id: String,
    /// `delivered`, `undelivered` or `failed`.
    #[schema(example = "delivered")]
    pub status: String,
    /// The gateway's or carrier's error code, if any.
    pub error_code: Option<String>,
}

/// A delivery report from the SMS gateway behind the webhook provider.
#[utoipa::path(
    post,
    path = "/webhooks/sms/status",
    tag = "webhooks",
    request_body(content = GatewayStatusReport, content_type = "application/json"),
    params(
        ("webhook-id" = String, Header, description = "Any id of this report"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; more than 5 minutes off is refused"),
        ("webhook-signature" = String, Header, description = "`v1,` + base64(HMAC-SHA256(key of SMS_WEBHOOK_SECRET, id.timestamp.body))"),
    ),
    responses(
        (status = 204, description = "Taken (also for an unknown message_id, which is ignored, and for a status that does not move forward)"),
        (status = 403, description = "`invalid_signature`: missing or wrong signature, or a stale timestamp", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the webhook is not one of the SMS providers", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`: signed, but not a report (fields, or a status other than delivered, undelivered, failed)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn gateway_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Error> {
    let body = read_body(body)?;
    let Some(secret) = state.sms_webhook.as_deref() else {
        return Err(Error::RouteNotFound);
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return Err(Error::InvalidSignature);
    };
    // The sender stamped the report with its wall clock, so it is checked against ours, not the
    // service's clock (which tests may move).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    standard_webhooks::verify(secret, id, timestamp, signature, &body, now)
        .map_err(|_| Error::InvalidSignature)?;

    let report: GatewayStatusReport = serde_json::from_slice(&body).map_err(|_| {
        Error::InvalidRequest(
            "A report is JSON with `message_id`, `status` and optionally `error_code`.".into(),
        )
    })?;
    let status = match report.status.as_str() {
        "delivered" => MessageStatus::Delivered,
        "undelivered" => MessageStatus::Undelivered,
        "failed" => MessageStatus::Failed,
        _ => {
            return Err(Error::InvalidRequest(
                "`status` is `delivered`, `undelivered` or `failed`.".into(),
            ));
        }
    };
    // Not one of our ids cannot be one of our messages: ignored like any unknown one.
    let Ok(message_id) = Uuid::parse_str(&report.message_id) else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let error_code = report.error_code.as_deref().filter(|c| !c.is_empty());
    let change = state
        .storage
        .report_status_by_id(
            message_id,
            GATEWAY_PROVIDER,
            status,
            error_code,
            state.verifier.now(),
        )
        .await?;
    if let Some(change) = change {
        crate::metrics::message_status(&change);
        fall_back(&state, change).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The automatic fallback a report may call for, before the report is answered (so a sender that
/// retries a slow answer finds the change made: its duplicate changes nothing). In a task of its
/// own, which a sender that hangs up cannot cancel halfway.
async fn fall_back(state: &AppState, change: StatusChange) {
    let verifier = state.verifier.clone();
    let task = tokio::spawn(
        async move { verifier.fall_back(&change).await }.instrument(tracing::Span::current()),
    );
    if let Err(e) = task.await {
        tracing::error!(error = %e, "the fallback task failed");
    }
}
