//! `/api/auth/phone/*`: send, resend and verify codes.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use std::net::IpAddr;

use super::AppState;
use super::extract::AppJson;
use super::rate_limit::ClientIp;
use crate::domain::{PhoneNumber, PhoneNumberError, VerificationCode};
use crate::error::Error;
use crate::storage::SendKind;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/phone/send-code", post(send_code))
        .route("/api/auth/phone/resend-code", post(resend_code))
        .route("/api/auth/phone/verify", post(verify_code))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCodeRequest {
    pub phone_number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub phone_number: String,
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendCodeResponse {
    pub status: String,
    pub phone_number: String,
    pub channel: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub expires_in: u64,
    pub resend_after: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub status: String,
    pub phone_number: String,
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
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
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

async fn send_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<SendCodeRequest>,
) -> Result<AppJson<SendCodeResponse>, Error> {
    send(state, body, SendKind::Start, ip).await
}

async fn resend_code(
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
    let phone = parse_phone(&body.phone_number)?;
    state.verifier.check_country(&phone)?;
    let sent = state.verifier.send_code(&phone, kind, ip).await?;
    Ok(AppJson(SendCodeResponse {
        status: "pending".into(),
        phone_number: phone.to_string(),
        channel: "sms".into(),
        expires_at: whole_seconds(sent.expires_at),
        expires_in: sent.expires_in.as_secs(),
        resend_after: sent.resend_after.as_secs(),
    }))
}

async fn verify_code(
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
        phone_number: phone.to_string(),
        verified_at,
        token,
        token_expires_in,
    }))
}
