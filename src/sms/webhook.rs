//! The webhook provider: each message as a signed JSON `POST` to a gateway that the operator runs
//! (Standard Webhooks), its answer mapped to ours, retried with the same `webhook-id`.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rand::RngExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CodeMessage, SendContext, SentMessage, SmsError, SmsSender};
use crate::config::{ConfigError, Vars};
use crate::domain::{Channel, MessageStatus, PhoneNumber};
use crate::signature::standard_webhooks::{self, WebhookSecret};

/// First backoff delay; each retry doubles it, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// The longest wait between two tries, whatever the gateway says: a user is waiting.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// `SMS_WEBHOOK_*`: where the gateway is, the secret both sides sign with, and how long to try.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: WebhookSecret,
    /// Extra tries after a 5xx, 408, 429, a timeout or no connection.
    pub max_retries: u32,
    /// For each try, connecting included.
    pub timeout: Duration,
}

impl WebhookSettings {
    /// `None` when `SMS_WEBHOOK_URL` is unset. A secret is required with it and checked whenever it
    /// is set, so a typo stops the start rather than every send.
    pub fn from_vars(vars: &Vars<'_>) -> Result<Option<Self>, ConfigError> {
        let secret = match vars.string("SMS_WEBHOOK_SECRET") {
            Some(raw) => Some(
                WebhookSecret::parse(&raw)
                    .map_err(|e| ConfigError::new("SMS_WEBHOOK_SECRET", e.to_string()))?,
            ),
            None => None,
        };
        if vars.string("SMS_WEBHOOK_URL").is_none() {
            return Ok(None);
        }
        let url = vars.url("SMS_WEBHOOK_URL", "")?;
        let secret = secret.ok_or_else(|| {
            ConfigError::new(
                "SMS_WEBHOOK_SECRET",
                "required with SMS_WEBHOOK_URL: whsec_ followed by base64 of 24 to 64 random bytes",
            )
        })?;
        Ok(Some(Self {
            url,
            secret,
            max_retries: vars.count("SMS_WEBHOOK_MAX_RETRIES", 2, 0, 10)?,
            timeout: vars.millis("SMS_WEBHOOK_TIMEOUT_MS", 10_000, 100, 60_000)?,
        }))
    }
}

/// The JSON body the gateway gets: the channel the message goes by and the user's locale (`null`
/// when none was asked for), with the text our templates made for that channel.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message_id: Uuid,
    verification_id: Option<Uuid>,
    to: &'a str,
    channel: &'static str,
    locale: Option<&'a str>,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
}

/// What a 2xx or 4xx answer may say.
#[derive(Debug, Default, Deserialize)]
struct GatewayAnswer {
    provider_message_id: Option<String>,
    error: Option<String>,
}

/// Sends through any gateway that accepts the signed `POST`: our codes and free text alike.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    url: String,
    secret: WebhookSecret,
    max_retries: u32,
}

impl WebhookSender {
    pub fn new(settings: &WebhookSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("phone-verify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            url: settings.url.clone(),
            secret: settings.secret.clone(),
            max_retries: settings.max_retries,
        })
    }

    async fn deliver(&self, payload: &Payload<'_>) -> Result<SentMessage, SmsError> {
        let body = serde_json::to_vec(payload).map_err(|e| SmsError::Rejected {
            provider_code: None,
            message: format!("the webhook payload could not be written: {e}"),
        })?;
        // The id is the message's, on every try: a gateway that saw it already can tell a retry
        // from a new message and send one SMS.
        let id = payload.message_id.to_string();
        let mut attempt = 0;
        loop {
            let error = match self.try_once(&id, &body).await {
                Ok(sent) => return Ok(sent),
                Err(Try::Final(e)) => return Err(e),
                Err(Try::Again(e)) => e,
            };
            if attempt >= self.max_retries {
                return Err(error);
            }
            attempt += 1;
            let wait = backoff(attempt);
            tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "SMS gateway unavailable; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn try_once(&self, id: &str, body: &[u8]) -> Result<SentMessage, Try> {
        let sent =
            standard_webhooks::signed_request(self.http.post(&self.url), &self.secret, id, body)
                .send()
                .await;
        let response = sent.map_err(|e| Try::Again(transport_error(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Try::Again(transport_error(&e)))?;
        let answer: GatewayAnswer = serde_json::from_slice(&bytes).unwrap_or_default();
        if status.is_success() {
            return Ok(SentMessage {
                provider_message_id: answer.provider_message_id.filter(|id| !id.is_empty()),
                status: MessageStatus::Accepted,
            });
        }
        Err(classify(status, answer))
    }
}

/// How one try ended, if not with the message taken.
enum Try {
    /// The gateway may not have acted: worth another try.
    Again(SmsError),
    /// A verdict: trying again would get the same answer.
    Final(SmsError),
}

fn classify(status: StatusCode, answer: GatewayAnswer) -> Try {
    let code = Some(i64::from(status.as_u16()));
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        tracing::warn!(%status, "the SMS gateway is unavailable or rate limiting us");
        return Try::Again(SmsError::Unavailable {
            reason: format!("the SMS gateway answered {status}"),
            retry_after: None,
        });
    }
    if answer.error.as_deref() == Some("invalid_phone_number") {
        tracing::info!(%status, "the SMS gateway refused the destination number");
        return Try::Final(SmsError::InvalidNumber {
            provider_code: code,
        });
    }
    tracing::error!(%status, error = answer.error.as_deref().unwrap_or(""), "the SMS gateway rejected the message");
    Try::Final(SmsError::Rejected {
        provider_code: code,
        message: format!("the SMS gateway answered {status}"),
    })
}

/// Exponential backoff with full jitter, capped.
fn backoff(attempt: u32) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64))
}

fn transport_error(e: &reqwest::Error) -> SmsError {
    let reason = if e.is_timeout() {
        "the request to the SMS gateway timed out"
    } else if e.is_connect() {
        "could not connect to the SMS gateway"
    } else {
        "the request to the SMS gateway failed"
    };
    SmsError::Unavailable {
        reason: reason.into(),
        retry_after: None,
    }
}

impl SmsSender for WebhookSender {
    fn name(&self) -> &'static str {
        "webhook"
    }

    /// The gateway sends by whichever channel it is told: the operator's adapter decides how.
    fn serves(&self, _channel: Channel) -> bool {
        true
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        message: &'a CodeMessage<'a>,
        context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let (code, body) = message.ours()?;
            let payload = Payload {
                kind: "verification_code",
                message_id: context.message_id,
                verification_id: context.verification_id,
                to: to.as_ref(),
                channel: message.channel.as_str(),
                locale: message.locale.map(|l| l.as_ref()),
                body,
                code: Some(code.expose()),
            };
            let sent = self.deliver(&payload).await?;
            tracing::info!(to = %to.masked(), channel = message.channel.as_str(), message_id = %context.message_id, "code accepted by the gateway");
            Ok(sent)
        }
        .boxed()
    }

    fn send_message<'a>(
        &'a self,
        to: &'a PhoneNumber,
        body: &'a str,
        context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let payload = Payload {
                kind: "message",
                message_id: context.message_id,
                verification_id: context.verification_id,
                to: to.as_ref(),
                channel: "sms",
                locale: None,
                body,
                code: None,
            };
            self.deliver(&payload).await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_errors_as_the_contract_says() {
        let again = |s: u16| {
            matches!(
                classify(StatusCode::from_u16(s).unwrap(), GatewayAnswer::default()),
                Try::Again(SmsError::Unavailable { .. })
            )
        };
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(again(s), "{s}");
        }
        let number = GatewayAnswer {
            provider_message_id: None,
            error: Some("invalid_phone_number".into()),
        };
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, number),
            Try::Final(SmsError::InvalidNumber {
                provider_code: Some(400)
            })
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, GatewayAnswer::default()),
            Try::Final(SmsError::Rejected {
                provider_code: Some(403),
                ..
            })
        ));
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..=10 {
            assert!(backoff(attempt) <= MAX_BACKOFF);
        }
        assert!(backoff(1) <= RETRY_BASE);
    }

    #[test]
    fn a_message_has_no_code_field() {
        let payload = Payload {
            kind: "message",
            message_id: Uuid::nil(),
            verification_id: None,
            to: "+12125551234",
            channel: "sms",
            locale: None,
            body: "hi",
            code: None,
        };
        let json: serde_json::Value = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["type"], "message");
        assert!(json.get("code").is_none());
        assert!(json["verification_id"].is_null() && json["locale"].is_null());
    }
}
