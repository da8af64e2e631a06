//! Sending SMS: one trait, one implementation per provider.

mod console;
mod twilio;
mod twilio_messaging;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::{Config, SmsProviderKind};
use crate::domain::{PhoneNumber, VerificationCode};

pub use console::ConsoleSender;
pub use twilio_messaging::TwilioMessagingSender;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentMessage {
    /// The provider's id for the message (Twilio's `SM…` SID), when it has one.
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The provider says the destination cannot receive this SMS (not a number, not mobile, …).
    #[error("the provider refused the destination number (code {provider_code:?})")]
    InvalidNumber { provider_code: Option<i64> },
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

    /// Sends a verification code.
    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        code: &'a VerificationCode,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>>;
}

/// Builds the sender that the configuration asks for.
pub fn from_config(config: &Config) -> anyhow::Result<Arc<dyn SmsSender>> {
    Ok(match config.sms_provider {
        SmsProviderKind::Console => Arc::new(ConsoleSender::new(config.sms_template.clone())),
        SmsProviderKind::TwilioMessaging => {
            let twilio = config
                .twilio
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("Twilio credentials are missing"))?;
            Arc::new(TwilioMessagingSender::new(
                twilio,
                config.sms_template.clone(),
            )?)
        }
        SmsProviderKind::TwilioVerify => {
            anyhow::bail!("SMS_PROVIDER=twilio-verify is not available in this build yet")
        }
    })
}

/// The SMS text for a code.
pub fn render_template(template: &str, code: &VerificationCode) -> String {
    template.replace("{code}", code.expose())
}
