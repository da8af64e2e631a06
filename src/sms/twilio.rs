//! What both Twilio providers share: the HTTP client, authentication, retries and the error body.

use std::time::Duration;

use rand::RngExt;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::SmsError;
use super::TwilioSettings;

/// The longest backoff between two tries, whatever `Retry-After` says: a user is waiting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Twilio's error body (`code` and `more_info` may be missing).
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct TwilioErrorBody {
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
    pub more_info: Option<String>,
}

/// A response Twilio gave, read in full.
#[derive(Debug)]
pub(crate) struct TwilioAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl TwilioAnswer {
    pub fn error_body(&self) -> TwilioErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }

    /// 429 (account rate limit, 20429) and 503 mean Twilio did not process the request, so trying
    /// again cannot send a second SMS. Per-number limits (60203, 60212) are also 429 but retrying
    /// them is pointless.
    fn is_retryable(&self) -> bool {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => true,
            StatusCode::TOO_MANY_REQUESTS => self.error_body().code.is_none_or(|c| c == 20429),
            _ => false,
        }
    }

    /// Turns a non-success answer into an [`SmsError`], logging what an operator must fix.
    pub fn into_error(self) -> SmsError {
        let error = self.error_body();
        let retry_after = self.retry_after();
        let status = self.status;
        let code = error.code;
        if matches!(code, Some(60203) | Some(60212)) {
            tracing::info!(provider_code = ?code, "Twilio's per-number send limit was reached");
            return SmsError::TooManySends {
                provider_code: code,
                retry_after,
            };
        }
        if status.is_server_error()
            || (status == StatusCode::TOO_MANY_REQUESTS && code.is_none_or(|c| c == 20429))
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
            Some(20003) => {
                "authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (test credentials do not work on live resources)"
            }
            Some(20404) => {
                "Twilio does not know the resource: check TWILIO_VERIFY_SERVICE_SID / TWILIO_ACCOUNT_SID"
            }
            Some(21608) => {
                "trial account: verify the destination number in the Twilio console, or upgrade the account"
            }
            Some(21606) => "TWILIO_PHONE_NUMBER cannot send SMS to this destination",
            Some(21215) | Some(13227) => {
                "the account may not call this destination: enable it in Voice geographic permissions"
            }
            Some(21210) => "TWILIO_VOICE_FROM is not a voice-capable number of this account",
            Some(63007) => "TWILIO_WHATSAPP_FROM is not a WhatsApp sender of this account",
            Some(63016) => {
                "WhatsApp took the message as free-form: TWILIO_WHATSAPP_CONTENT_SID must be an approved template"
            }
            Some(60223) => "enable the SMS channel in the Verify Service settings",
            Some(60605) | Some(60410) => {
                "the destination is blocked by Verify Geo-Permissions or Fraud Guard"
            }
            Some(575001) => "Verify is not available for this trial account",
            _ => "see the error's more_info page",
        };
        tracing::error!(
            %status,
            provider_code = ?code,
            more_info = error.more_info.as_deref().unwrap_or(""),
            "Twilio rejected the request: {hint}"
        );
        SmsError::Rejected {
            provider_code: code,
            message: error.message,
        }
    }
}

/// Error codes that mean "this destination cannot get the SMS": the number the user typed will not
/// work, so it is their error (422), not ours. 21217 and 13224 are the Calls API's "not a valid
/// number" and "cannot call this number".
const NUMBER_ERRORS: &[i64] = &[
    21211, 21614, 21635, 21612, 21610, 21408, 60205, 21217, 13224,
];

/// An authenticated client for one Twilio account; clones share one connection pool.
#[derive(Clone)]
pub(crate) struct TwilioClient {
    http: reqwest::Client,
    account_sid: String,
    auth_token: SecretString,
    max_retries: u32,
    retry_base: Duration,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(config: &TwilioSettings) -> anyhow::Result<Self> {
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
            max_retries: config.max_retries,
            retry_base: config.retry_base,
        })
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// POSTs a form; retries only where Twilio cannot have acted on the request (no connection,
    /// or a 429/503 answer). A timeout is not retried: the SMS may be on its way.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<TwilioAnswer, SmsError> {
        let mut attempt = 0;
        loop {
            let sent = self
                .http
                .post(url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(form)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_connect() && attempt < self.max_retries => {
                    attempt += 1;
                    let wait = self.backoff(attempt, None);
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "could not connect to Twilio; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    return Err(SmsError::Unavailable {
                        reason: describe_transport_error(&e),
                        retry_after: None,
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| SmsError::Unavailable {
                reason: describe_transport_error(&e),
                retry_after: None,
            })?;
            let answer = TwilioAnswer {
                status,
                headers,
                body,
            };
            if answer.is_retryable() && attempt < self.max_retries {
                attempt += 1;
                let wait = self.backoff(attempt, answer.retry_after());
                tracing::warn!(%status, attempt, wait_ms = wait.as_millis() as u64, "Twilio asked us to slow down; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(answer);
        }
    }

    /// Exponential backoff with full jitter, or Twilio's `Retry-After` when it gives one; capped.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_BACKOFF);
        }
        let ceiling = self
            .retry_base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        let ms = rand::rng().random_range(0..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
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
