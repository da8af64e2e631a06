//! Sending SMS: one trait, one implementation per provider.

mod console;
mod twilio;
mod twilio_messaging;
mod twilio_verify;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::{Config, SmsProviderKind};
use crate::domain::{PhoneNumber, VerificationCode};

pub use console::ConsoleSender;
pub use twilio_messaging::TwilioMessagingSender;
pub use twilio_verify::TwilioVerifySender;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentMessage {
    /// The provider's id for the message or verification (`SM…`, `VE…`), when it has one.
    pub provider_message_id: Option<String>,
}

/// A provider's answer to "is this the code?" (Twilio Verify only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderVerdict {
    Approved,
    WrongCode,
    /// The provider no longer has the verification: approved, expired or locked on its side.
    NotFound,
    MaxAttemptsReached,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The provider says the destination cannot receive this SMS (not a number, not mobile, …).
    #[error("the provider refused the destination number (code {provider_code:?})")]
    InvalidNumber { provider_code: Option<i64> },
    /// The provider's own per-number send limit (Verify 60203, 60212).
    #[error("the provider's send limit for this number was reached (code {provider_code:?})")]
    TooManySends {
        provider_code: Option<i64>,
        retry_after: Option<Duration>,
    },
    /// The provider refused the message for another reason: credentials, account, configuration.
    #[error("the provider rejected the message (code {provider_code:?}): {message}")]
    Rejected {
        provider_code: Option<i64>,
        message: String,
    },
    /// Timeouts, connection failures, 5xx and rate limiting on the provider's side.
    #[error("the SMS provider is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
}

pub trait SmsSender: Send + Sync + 'static {
    /// The provider's name as configured (`console`, `twilio-messaging`, …), for logs and metrics.
    fn name(&self) -> &'static str;

    /// True when the provider makes and checks codes itself (Twilio Verify): then `send_code` gets
    /// no code and `check_code` asks the provider.
    fn checks_codes(&self) -> bool {
        false
    }

    /// Sends a verification code: ours, or one the provider makes when `checks_codes()`.
    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        code: Option<&'a VerificationCode>,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>>;

    /// Asks the provider whether `code` is right. Only for providers that `checks_codes()`.
    fn check_code<'a>(
        &'a self,
        _to: &'a PhoneNumber,
        _code: &'a VerificationCode,
    ) -> BoxFuture<'a, Result<ProviderVerdict, SmsError>> {
        Box::pin(async {
            Err(SmsError::Rejected {
                provider_code: None,
                message: "this provider does not check codes".into(),
            })
        })
    }

    /// Sends free text (the internal endpoint). Not every provider can.
    fn send_message<'a>(
        &'a self,
        to: &'a PhoneNumber,
        body: &'a str,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>>;
}

/// The configured providers: one for codes, one for free-text messages (the internal endpoint).
#[derive(Clone)]
pub struct Providers {
    pub codes: Arc<dyn SmsSender>,
    /// `None` with the Verify provider and no `TWILIO_PHONE_NUMBER`.
    pub messages: Option<Arc<dyn SmsSender>>,
}

/// Builds the senders that the configuration asks for, sharing one HTTP client.
pub fn from_config(config: &Config) -> anyhow::Result<Providers> {
    let template = config.sms_template.clone();
    if config.sms_provider == SmsProviderKind::Console {
        let console: Arc<dyn SmsSender> = Arc::new(ConsoleSender::new(template));
        return Ok(Providers {
            codes: console.clone(),
            messages: Some(console),
        });
    }
    let twilio = config
        .twilio
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("Twilio credentials are missing"))?;
    let client = twilio::TwilioClient::new(twilio)?;
    let messaging: Option<Arc<dyn SmsSender>> = match &twilio.phone_number {
        Some(from) => Some(Arc::new(TwilioMessagingSender::new(
            client.clone(),
            &twilio.api_base_url,
            from.clone(),
            template,
        ))),
        None => None,
    };
    let codes: Arc<dyn SmsSender> = match config.sms_provider {
        SmsProviderKind::TwilioVerify => {
            let service = twilio
                .verify_service_sid
                .clone()
                .ok_or_else(|| anyhow::anyhow!("TWILIO_VERIFY_SERVICE_SID is not set"))?;
            Arc::new(TwilioVerifySender::new(
                client,
                &twilio.verify_base_url,
                &service,
            ))
        }
        _ => messaging
            .clone()
            .ok_or_else(|| anyhow::anyhow!("TWILIO_PHONE_NUMBER is not set"))?,
    };
    Ok(Providers {
        codes,
        messages: messaging,
    })
}

/// The SMS text for a code.
pub fn render_template(template: &str, code: &VerificationCode) -> String {
    template.replace("{code}", code.expose())
}

fn missing_code() -> SmsError {
    SmsError::Rejected {
        provider_code: None,
        message: "no code to send".into(),
    }
}
