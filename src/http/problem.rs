//! `Error` → `application/problem+json` (RFC 9457): the only place that picks statuses and codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, ErrorCode};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer, `application/problem+json` (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` says what happened.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    pub kind: &'static str,
    /// The HTTP status's reason phrase.
    #[schema(value_type = String, example = "Too Many Requests")]
    pub title: &'static str,
    #[schema(example = 429)]
    pub status: u16,
    pub code: ErrorCode,
    /// For people; may change. Programs branch on `code`.
    #[schema(example = "Wait 27 seconds before requesting another code.")]
    pub detail: String,
    /// This occurrence: the request id (also in the `X-Request-Id` header and every log line of the
    /// request), as a URN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Seconds to wait (`resend_too_soon`, `too_many_sends`, `rate_limited`); also `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Wrong attempts left for this code (`invalid_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_remaining: Option<u32>,
    /// The SMS provider's error code (`sms_rejected`), when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<i64>,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MalformedJson => StatusCode::BAD_REQUEST,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InvalidRequest(_)
            | Error::InvalidPhoneNumber(_)
            | Error::InvalidCodeFormat { .. }
            | Error::ChannelNotAvailable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::CountryNotAllowed | Error::DestinationBlocked | Error::InvalidSignature => {
                StatusCode::FORBIDDEN
            }
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::InvalidCode { .. } => StatusCode::BAD_REQUEST,
            Error::VerificationNotFound | Error::BlockNotFound | Error::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Error::CodeExpired => StatusCode::GONE,
            Error::MaxAttemptsReached
            | Error::ResendTooSoon { .. }
            | Error::TooManySends { .. }
            | Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::SmsRejected { .. } => StatusCode::BAD_GATEWAY,
            Error::SmsProviderUnavailable { .. } | Error::StorageUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code of API.md's error table.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::MalformedJson => ErrorCode::MalformedJson,
            Error::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Error::InvalidPhoneNumber(_) => ErrorCode::InvalidPhoneNumber,
            Error::InvalidCodeFormat { .. } => ErrorCode::InvalidCodeFormat,
            Error::ChannelNotAvailable { .. } => ErrorCode::ChannelNotAvailable,
            Error::CountryNotAllowed => ErrorCode::CountryNotAllowed,
            Error::DestinationBlocked => ErrorCode::DestinationBlocked,
            Error::InvalidSignature => ErrorCode::InvalidSignature,
            Error::Unauthorized => ErrorCode::Unauthorized,
            Error::InvalidCode { .. } => ErrorCode::InvalidCode,
            Error::VerificationNotFound => ErrorCode::VerificationNotFound,
            Error::BlockNotFound => ErrorCode::BlockNotFound,
            Error::CodeExpired => ErrorCode::CodeExpired,
            Error::MaxAttemptsReached => ErrorCode::MaxAttemptsReached,
            Error::ResendTooSoon { .. } => ErrorCode::ResendTooSoon,
            Error::TooManySends { .. } => ErrorCode::TooManySends,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::SmsRejected { .. } => ErrorCode::SmsRejected,
            Error::SmsProviderUnavailable { .. } => ErrorCode::SmsProviderUnavailable,
            Error::StorageUnavailable => ErrorCode::StorageUnavailable,
            Error::RouteNotFound => ErrorCode::NotFound,
            Error::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Error::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// Seconds after which a retry can succeed, for the `Retry-After` header.
    fn retry_after_header(&self) -> Option<u64> {
        match self {
            Error::ResendTooSoon { retry_after }
            | Error::TooManySends { retry_after, .. }
            | Error::RateLimited { retry_after }
            | Error::SmsProviderUnavailable { retry_after } => Some(retry_after.as_secs().max(1)),
            Error::StorageUnavailable => Some(5),
            _ => None,
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code: self.code(),
            // An internal error's own message may hold details of our internals: never send it.
            detail: self.to_string(),
            instance: super::CURRENT_REQUEST_ID
                .try_with(|id| request_id_urn(id))
                .ok()
                .flatten(),
            retry_after: match self {
                Error::ResendTooSoon { .. }
                | Error::TooManySends { .. }
                | Error::RateLimited { .. } => self.retry_after_header(),
                _ => None,
            },
            attempts_remaining: match self {
                Error::InvalidCode { attempts_remaining } => Some(*attempts_remaining),
                _ => None,
            },
            provider_code: match self {
                Error::SmsRejected { provider_code } => *provider_code,
                _ => None,
            },
        }
    }
}

/// `urn:uuid:…` for our own ids; a client's own id only if it is URI-safe.
fn request_id_urn(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 128 {
        return None;
    }
    if uuid::Uuid::parse_str(id).is_ok() {
        return Some(format!("urn:uuid:{id}"));
    }
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        .then(|| format!("urn:request-id:{id}"))
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(e) = &self {
            // Logged once, here, with its whole cause chain; the client gets a generic body.
            tracing::error!(error.cause_chain = ?e, "request failed with an internal error");
        }
        crate::metrics::rejection(&self);
        let problem = self.to_problem();
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            serde_json::to_vec(&problem).unwrap_or_default(),
        )
            .into_response();
        if let Some(secs) = self.retry_after_header() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
