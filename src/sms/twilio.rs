//! What both Twilio providers share: the HTTP client, authentication and the error body.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::SmsError;
use crate::config::TwilioConfig;

/// Twilio's error body (`code` and `more_info` may be missing).
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct TwilioErrorBody {
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
    pub more_info: Option<String>,
}

/// An authenticated client for one Twilio account.
#[derive(Clone)]
pub(crate) struct TwilioClient {
    http: reqwest::Client,
    account_sid: String,
    auth_token: SecretString,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(config: &TwilioConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("phone-verify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
        })
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// POSTs a form and returns the status and body, or `Unavailable` when no answer came.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, bytes::Bytes), SmsError> {
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(form)
            .send()
            .await
            .map_err(|e| SmsError::Unavailable {
                reason: describe_transport_error(&e),
                retry_after: None,
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| SmsError::Unavailable {
            reason: describe_transport_error(&e),
            retry_after: None,
        })?;
        Ok((status, headers, body))
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request to Twilio timed out".into()
    } else if e.is_connect() {
        "could not connect to Twilio".into()
    } else {
        "request to Twilio failed".into()
    }
}

/// Error codes that mean "this destination cannot get the SMS": the user typed a number that will not
/// work, so it is their error (422), not ours.
const NUMBER_ERRORS: &[i64] = &[21211, 21614, 21635, 21612, 60205, 21408, 21610];

/// Turns a non-success answer into an [`SmsError`], logging what an operator must fix.
pub(crate) fn map_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> SmsError {
    let error: TwilioErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let code = error.code;
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS && code.is_none_or(|c| c == 20429)
    {
        tracing::warn!(%status, provider_code = ?code, "Twilio is unavailable or rate limiting us");
        return SmsError::Unavailable {
            reason: format!("Twilio answered {status}"),
            retry_after,
        };
    }
    let number_problem = code.is_some_and(|c| NUMBER_ERRORS.contains(&c))
        || (code == Some(60200) && error.message.contains("To"));
    if number_problem {
        tracing::info!(provider_code = ?code, "Twilio refused the destination number");
        return SmsError::InvalidNumber {
            provider_code: code,
        };
    }
    let hint = match code {
        Some(20003) => "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (authentication failed)",
        Some(20404) => "check the Service SID or account: Twilio does not know the resource",
        Some(21608) => {
            "trial account: verify the destination number in the Twilio console or upgrade"
        }
        Some(21606) => "TWILIO_PHONE_NUMBER cannot send SMS to this destination",
        Some(60223) => "enable the SMS channel in the Verify Service settings",
        Some(60605) | Some(60410) => "enable this country in Verify Geo-Permissions / Fraud Guard",
        Some(575001) => "Verify is not available for this trial account",
        _ => "see the error's more_info page",
    };
    tracing::error!(
        %status,
        provider_code = ?code,
        more_info = error.more_info.as_deref().unwrap_or(""),
        "Twilio rejected the message: {hint}"
    );
    SmsError::Rejected {
        provider_code: code,
        message: error.message,
    }
}
