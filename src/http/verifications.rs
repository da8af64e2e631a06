//! `/api/auth/phone/*`: send, resend and verify codes.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use std::net::IpAddr;

use super::AppState;
use super::extract::AppJson;
use super::problem::Problem;
use super::rate_limit::ClientIp;
use crate::domain::{Locale, PhoneNumber, PhoneNumberError, VerificationCode};
use crate::error::Error;
use crate::storage::SendKind;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/phone/send-code", post(send_code))
        .route("/api/auth/phone/resend-code", post(resend_code))
        .route("/api/auth/phone/verify", post(verify_code))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCodeRequest {
    /// E.164: `+`, country code, number. Spaces, dots, dashes and parentheses are tolerated.
    #[schema(example = "+12125551234", max_length = 64)]
    pub phone_number: String,
    /// `sms` (the default), `whatsapp` or `call`: one of `ALLOWED_CHANNELS`, else
    /// `422 channel_not_available`.
    #[schema(example = "sms")]
    pub channel: Option<String>,
    /// A BCP 47 language tag (`en`, `pt-BR`): picks the template (`SMS_TEMPLATE_<TAG>`, then its
    /// language's, then `SMS_TEMPLATE`) and the provider's language.
    #[schema(example = "pt-BR", max_length = 35, pattern = "^[A-Za-z0-9-]{1,35}$")]
    pub locale: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[schema(example = "+12125551234", max_length = 64)]
    pub phone_number: String,
    /// Exactly `CODE_LENGTH` (default 6) ASCII digits.
    #[schema(example = "123456", pattern = "^[0-9]{4,10}$")]
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendCodeResponse {
    #[schema(example = "pending")]
    pub status: String,
    /// Names the verification: the same across resends, a new one after an approval.
    #[schema(example = "0b6e8a3c-6f1e-4c47-9d51-2b7f2f0d9a10")]
    pub verification_id: uuid::Uuid,
    /// The normalized E.164 number.
    #[schema(example = "+12125551234")]
    pub phone_number: String,
    /// The channel the code went by: `sms`, `whatsapp` or `call`.
    #[schema(example = "sms")]
    pub channel: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:40:00Z")]
    pub expires_at: OffsetDateTime,
    /// Seconds the code stays valid.
    #[schema(example = 600)]
    pub expires_in: u64,
    /// Seconds until another send to this number is allowed.
    #[schema(example = 30)]
    pub resend_after: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    #[schema(example = "approved")]
    pub status: String,
    /// Names the verification: the same across resends, a new one after an approval.
    #[schema(example = "0b6e8a3c-6f1e-4c47-9d51-2b7f2f0d9a10")]
    pub verification_id: uuid::Uuid,
    #[schema(example = "+12125551234")]
    pub phone_number: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:31:12Z")]
    pub verified_at: OffsetDateTime,
    /// HS256 JWT (`sub`, `iat`, `exp`, `jti`, `phone_number_verified`); only with
    /// `VERIFICATION_TOKEN_SECRET` set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Seconds the token is valid; only with the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_in: Option<u64>,
}

pub fn parse_phone(input: &str) -> Result<PhoneNumber, Error> {
    PhoneNumber::parse(input).map_err(|e| {
        Error::InvalidPhoneNumber(match e {
            PhoneNumberError::Invalid => {
                "The phone number is not a valid number; send it in E.164 form, e.g. +12125551234."
                    .to_string()
            }
            other => format!("{}{}", capitalize(&other.to_string()), "."),
        })
    })
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whole seconds: the contract's times carry no fractions, and rounding down never promises a code
/// longer life than it has.
pub(super) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Start (or restart) a verification and send a code by SMS, WhatsApp or a voice call.
#[utoipa::path(
    post,
    path = "/api/auth/phone/send-code",
    tag = "verification",
    request_body = SendCodeRequest,
    responses(
        (status = 200, description = "Code sent", body = SendCodeResponse),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`country_not_allowed`; `destination_blocked`: the fraud guard blocks the number's prefix or country", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request` (also a malformed `locale`), `invalid_phone_number`, `channel_not_available`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`resend_too_soon`, `too_many_sends`, `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`sms_provider_unavailable`, `storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn send_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<SendCodeRequest>,
) -> Result<AppJson<SendCodeResponse>, Error> {
    send(state, body, SendKind::Start, ip).await
}

/// Send a new code for a verification that is not approved yet.
#[utoipa::path(
    post,
    path = "/api/auth/phone/resend-code",
    tag = "verification",
    request_body = SendCodeRequest,
    responses(
        (status = 200, description = "Code sent", body = SendCodeResponse),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`country_not_allowed`; `destination_blocked`: the fraud guard blocks the number's prefix or country", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`verification_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request` (also a malformed `locale`), `invalid_phone_number`, `channel_not_available`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`resend_too_soon`, `too_many_sends`, `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`sms_provider_unavailable`, `storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resend_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<SendCodeRequest>,
) -> Result<AppJson<SendCodeResponse>, Error> {
    send(state, body, SendKind::Resend, ip).await
}

async fn send(
    state: AppState,
    body: SendCodeRequest,
    kind: SendKind,
    ip: Option<IpAddr>,
) -> Result<AppJson<SendCodeResponse>, Error> {
    // Everything is checked before anything is reserved: a bad value costs nothing.
    let phone = parse_phone(&body.phone_number)?;
    let channel = state.verifier.channel(body.channel.as_deref())?;
    let locale = body
        .locale
        .as_deref()
        .map(Locale::parse)
        .transpose()
        .map_err(|e| Error::InvalidRequest(format!("{}{}", capitalize(&e.to_string()), ".")))?;
    state.verifier.check_country(&phone)?;
    let sent = state
        .verifier
        .send_code(&phone, kind, ip, channel, locale.as_ref())
        .await?;
    Ok(AppJson(SendCodeResponse {
        status: "pending".into(),
        verification_id: sent.verification_id,
        phone_number: phone.to_string(),
        channel: sent.channel.as_str().into(),
        expires_at: whole_seconds(sent.expires_at),
        expires_in: sent.expires_in.as_secs(),
        resend_after: sent.resend_after.as_secs(),
    }))
}

/// Check a code. A code works once.
#[utoipa::path(
    post,
    path = "/api/auth/phone/verify",
    tag = "verification",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified", body = VerifyResponse),
        (status = 400, description = "`invalid_code` (with `attempts_remaining`), `malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`verification_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`code_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`, `invalid_phone_number`, `invalid_code_format`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`max_attempts_reached`, `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`sms_rejected` (Twilio Verify)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`sms_provider_unavailable` (Twilio Verify), `storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_code(
    State(state): State<AppState>,
    AppJson(body): AppJson<VerifyRequest>,
) -> Result<AppJson<VerifyResponse>, Error> {
    let phone = parse_phone(&body.phone_number)?;
    let length = state.verifier.settings().code_length;
    let code = VerificationCode::parse(&body.code, length)
        .map_err(|_| Error::InvalidCodeFormat { length })?;
    let verified = state.verifier.verify(&phone, &code).await?;
    let verified_at = whole_seconds(verified.verified_at);
    let (token, token_expires_in) = match &state.tokens {
        Some(signer) => (
            Some(
                signer
                    .sign(&phone, verified.verification_id, verified_at)
                    .map_err(|e| Error::Internal(e.context("signing the verification token")))?,
            ),
            Some(signer.ttl().as_secs()),
        ),
        None => (None, None),
    };
    Ok(AppJson(VerifyResponse {
        status: "approved".into(),
        verification_id: verified.verification_id,
        phone_number: phone.to_string(),
        verified_at,
        token,
        token_expires_in,
    }))
}
