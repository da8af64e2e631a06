//! Sending SMS: one trait, one implementation per provider.

mod console;
mod failover;
mod settings;
mod templates;
mod twilio;
mod twilio_messaging;
mod twilio_verify;
mod voice;
mod webhook;

use std::time::Duration;

use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::domain::{Channel, Locale, MessageStatus, PhoneNumber, VerificationCode};

pub use console::ConsoleSender;
pub use failover::Failover;
pub use settings::{Providers, SmsProviderKind, SmsSettings, TwilioSettings};
pub use templates::{DEFAULT_TEMPLATE, Templates};
pub use twilio_messaging::{TwilioMessagingSender, WhatsappSender};
pub use twilio_verify::TwilioVerifySender;
pub use webhook::{WebhookSender, WebhookSettings};

/// Our ids for the message being sent, for providers that pass them on (the webhook's
/// `message_id`, also its `webhook-id`, and `verification_id`): the verifier makes them, so the
/// message record, the gateway and its status reports all name the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendContext {
    pub message_id: Uuid,
    /// `None` for a custom SMS.
    pub verification_id: Option<Uuid>,
}

/// A code on its way, as every provider gets it: the code, the channel it goes by, the user's
/// locale, and the text this service wrote for it.
#[derive(Debug, Clone, Copy)]
pub struct CodeMessage<'a> {
    /// Ours; `None` when the provider makes the code itself (Twilio Verify).
    pub code: Option<&'a VerificationCode>,
    pub channel: Channel,
    pub locale: Option<&'a Locale>,
    /// The template's text for this channel and locale, with the code in it (and, for SMS, the
    /// autofill lines); `None` when there is no code of ours.
    pub body: Option<&'a str>,
}

impl<'a> CodeMessage<'a> {
    /// The code and its text, or the error of a provider that needs ours and got none.
    fn ours(&self) -> Result<(&'a VerificationCode, &'a str), SmsError> {
        match (self.code, self.body) {
            (Some(code), Some(body)) => Ok((code, body)),
            _ => Err(missing_code()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The provider's id for the message or verification (`SM…`, `VE…`), when it has one.
    pub provider_message_id: Option<String>,
    /// `accepted` when the provider took it; `sent` when there is nothing further to learn
    /// (console).
    pub status: MessageStatus,
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

impl SmsError {
    /// What the message record says after this error: refused outright, or never taken.
    pub fn message_status(&self) -> MessageStatus {
        match self {
            SmsError::Unavailable { .. } => MessageStatus::Failed,
            _ => MessageStatus::Rejected,
        }
    }

    /// The provider's own error code, when it gave one.
    pub fn provider_code(&self) -> Option<i64> {
        match self {
            SmsError::InvalidNumber { provider_code }
            | SmsError::TooManySends { provider_code, .. }
            | SmsError::Rejected { provider_code, .. } => *provider_code,
            SmsError::Unavailable { .. } => None,
        }
    }

    /// Whether the send may be made on the next provider: only when this one never took it. A
    /// refusal is a verdict (on the number, the message, our account) that another provider would
    /// either repeat or contradict with a second SMS.
    pub fn fails_over(&self) -> bool {
        matches!(self, SmsError::Unavailable { .. })
    }
}

pub trait SmsSender: Send + Sync + 'static {
    /// The provider's name as configured (`console`, `twilio-messaging`, …), for logs and metrics.
    fn name(&self) -> &'static str;

    /// True when the provider makes and checks codes itself (Twilio Verify): then `send_code` gets
    /// no code and `check_code` asks the provider.
    fn checks_codes(&self) -> bool {
        false
    }

    /// Whether this provider, as configured, can send codes by `channel`.
    fn serves(&self, channel: Channel) -> bool;

    /// Sends a verification code by `message.channel`: ours, or one the provider makes when
    /// `checks_codes()`.
    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        message: &'a CodeMessage<'a>,
        context: &'a SendContext,
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
        context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>>;
}

fn missing_code() -> SmsError {
    SmsError::Rejected {
        provider_code: None,
        message: "no code to send".into(),
    }
}
