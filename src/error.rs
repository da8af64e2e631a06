//! The one error type every request can end in. `http::problem` turns it into
//! `application/problem+json`; nothing else decides a status code or an error `code`.

use std::time::Duration;

use crate::sms::SmsError;
use crate::storage::StorageError;

/// The stable, machine-readable `code` of every problem answer (API.md's error table, plus the
/// router's own `not_found` and `method_not_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidRequest,
    InvalidPhoneNumber,
    InvalidCodeFormat,
    ChannelNotAvailable,
    CountryNotAllowed,
    DestinationBlocked,
    InvalidSignature,
    Unauthorized,
    InvalidCode,
    VerificationNotFound,
    BlockNotFound,
    CodeExpired,
    MaxAttemptsReached,
    ResendTooSoon,
    TooManySends,
    RateLimited,
    SmsRejected,
    SmsProviderUnavailable,
    StorageUnavailable,
    InternalError,
    NotFound,
    MethodNotAllowed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPhoneNumber,
        ErrorCode::InvalidCodeFormat,
        ErrorCode::ChannelNotAvailable,
        ErrorCode::CountryNotAllowed,
        ErrorCode::DestinationBlocked,
        ErrorCode::InvalidSignature,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCode,
        ErrorCode::VerificationNotFound,
        ErrorCode::BlockNotFound,
        ErrorCode::CodeExpired,
        ErrorCode::MaxAttemptsReached,
        ErrorCode::ResendTooSoon,
        ErrorCode::TooManySends,
        ErrorCode::RateLimited,
        ErrorCode::SmsRejected,
        ErrorCode::SmsProviderUnavailable,
        ErrorCode::StorageUnavailable,
        ErrorCode::InternalError,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPhoneNumber => "invalid_phone_number",
            ErrorCode::InvalidCodeFormat => "invalid_code_format",
            ErrorCode::ChannelNotAvailable => "channel_not_available",
            ErrorCode::CountryNotAllowed => "country_not_allowed",
            ErrorCode::DestinationBlocked => "destination_blocked",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::VerificationNotFound => "verification_not_found",
            ErrorCode::BlockNotFound => "block_not_found",
            ErrorCode::CodeExpired => "code_expired",
            ErrorCode::MaxAttemptsReached => "max_attempts_reached",
            ErrorCode::ResendTooSoon => "resend_too_soon",
            ErrorCode::TooManySends => "too_many_sends",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SmsRejected => "sms_rejected",
            ErrorCode::SmsProviderUnavailable => "sms_provider_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// Which per-hour cap a send ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCap {
    PhoneNumber,
    ClientIp,
    Country,
    /// The SMS provider's own per-number limit (Twilio Verify 60203).
    Provider,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("The request body is not valid JSON.")]
    MalformedJson,
    #[error("Send the body as application/json.")]
    UnsupportedMediaType,
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidPhoneNumber(String),
    #[error("The code must be exactly {length} digits.")]
    InvalidCodeFormat { length: usize },
    /// The channels that can be asked for, comma-separated.
    #[error("Codes cannot be sent by this channel; `channel` may be one of: {allowed}.")]
    ChannelNotAvailable { allowed: String },
    #[error("Phone numbers from this country are not accepted.")]
    CountryNotAllowed,
    #[error("Codes to this destination are blocked for now (suspected SMS pumping).")]
    DestinationBlocked,
    #[error("The request's signature is missing or does not match.")]
    InvalidSignature,
    #[error("A valid bearer token is required.")]
    Unauthorized,
    #[error("The code is not correct.")]
    InvalidCode { attempts_remaining: u32 },
    #[error("There is no pending verification for this phone number.")]
    VerificationNotFound,
    #[error("There is no running fraud block with this key.")]
    BlockNotFound,
    #[error("The code has expired; request a new one.")]
    CodeExpired,
    #[error("Too many wrong codes; request a new code.")]
    MaxAttemptsReached,
    #[error("Wait {} seconds before requesting another code.", retry_after.as_secs())]
    ResendTooSoon { retry_after: Duration },
    #[error("Too many codes were requested; try again in {} seconds.", retry_after.as_secs())]
    TooManySends { retry_after: Duration, cap: SendCap },
    #[error("Too many requests; try again in {} seconds.", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("The SMS provider refused to send the message.")]
    SmsRejected { provider_code: Option<i64> },
    #[error("The SMS provider is unavailable; try again shortly.")]
    SmsProviderUnavailable { retry_after: Duration },
    #[error("The service cannot reach its database; try again shortly.")]
    StorageUnavailable,
    #[error("No such resource.")]
    RouteNotFound,
    #[error("This method is not allowed here.")]
    MethodNotAllowed,
    #[error("An internal error occurred.")]
    Internal(#[source] anyhow::Error),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => {
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "database unavailable");
                Error::StorageUnavailable
            }
            other => Error::Internal(other.into()),
        }
    }
}

impl From<SmsError> for Error {
    fn from(e: SmsError) -> Self {
        match e {
            SmsError::InvalidNumber { .. } => Error::InvalidPhoneNumber(
                "The SMS provider cannot deliver to this phone number.".into(),
            ),
            SmsError::Rejected { provider_code, .. } => Error::SmsRejected { provider_code },
            SmsError::TooManySends { retry_after, .. } => Error::TooManySends {
                // Twilio Verify's window is ten minutes when it does not say.
                retry_after: retry_after.unwrap_or(Duration::from_secs(600)),
                cap: SendCap::Provider,
            },
            SmsError::Unavailable { retry_after, .. } => Error::SmsProviderUnavailable {
                retry_after: retry_after
                    .unwrap_or(Duration::from_secs(5))
                    .clamp(Duration::from_secs(1), Duration::from_secs(300)),
            },
        }
    }
}
