//! The SMS settings (`SMS_PROVIDER`, `SMS_TEMPLATE`, `TWILIO_*`) and the providers they build.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::twilio::TwilioClient;
use super::{ConsoleSender, SmsSender, TwilioMessagingSender, TwilioVerifySender};
use crate::config::{ConfigError, Vars};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProviderKind {
    Console,
    TwilioVerify,
    TwilioMessaging,
}

impl SmsProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::TwilioVerify => "twilio-verify",
            Self::TwilioMessaging => "twilio-messaging",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmsSettings {
    pub provider: SmsProviderKind,
    pub twilio: Option<TwilioSettings>,
    /// Body of the code SMS that this service writes; contains `{code}`.
    pub template: String,
}

#[derive(Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub verify_service_sid: Option<String>,
    pub phone_number: Option<String>,
    pub api_base_url: String,
    pub verify_base_url: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra tries after a connection failure or a 429/503 answer (never after a request that may
    /// have sent an SMS).
    pub max_retries: u32,
    /// First backoff delay; each retry doubles it, with full jitter.
    pub retry_base: Duration,
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("verify_service_sid", &self.verify_service_sid)
            .field("phone_number", &self.phone_number)
            .field("api_base_url", &self.api_base_url)
            .field("verify_base_url", &self.verify_base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

/// The configured providers: one for codes, one for free-text messages (the internal endpoint).
#[derive(Clone)]
pub struct Providers {
    pub codes: Arc<dyn SmsSender>,
    /// `None` with the Verify provider and no `TWILIO_PHONE_NUMBER`.
    pub messages: Option<Arc<dyn SmsSender>>,
}

impl SmsSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let twilio = TwilioSettings::from_vars(vars)?;
        let provider = match vars.choice(
            "SMS_PROVIDER",
            &[
                ("auto", None),
                ("console", Some(SmsProviderKind::Console)),
                ("twilio-verify", Some(SmsProviderKind::TwilioVerify)),
                ("twilio-messaging", Some(SmsProviderKind::TwilioMessaging)),
            ],
        )? {
            Some(Some(kind)) => kind,
            None | Some(None) => match &twilio {
                Some(t) if t.verify_service_sid.is_some() => SmsProviderKind::TwilioVerify,
                Some(t) if t.phone_number.is_some() => SmsProviderKind::TwilioMessaging,
                _ => SmsProviderKind::Console,
            },
        };
        if provider != SmsProviderKind::Console {
            let Some(t) = &twilio else {
                let missing = if vars.string("TWILIO_ACCOUNT_SID").is_none() {
                    "TWILIO_ACCOUNT_SID"
                } else {
                    "TWILIO_AUTH_TOKEN"
                };
                return Err(ConfigError::new(
                    missing,
                    format!("required by SMS_PROVIDER={}", provider.as_str()),
                ));
            };
            let (needed, present) = match provider {
                SmsProviderKind::TwilioVerify => {
                    ("TWILIO_VERIFY_SERVICE_SID", t.verify_service_sid.is_some())
                }
                _ => ("TWILIO_PHONE_NUMBER", t.phone_number.is_some()),
            };
            if !present {
                return Err(ConfigError::new(
                    needed,
                    format!("required by SMS_PROVIDER={}", provider.as_str()),
                ));
            }
        }
        let template = vars.string_or("SMS_TEMPLATE", "Your verification code is {code}");
        if !template.contains("{code}") {
            return Err(ConfigError::new("SMS_TEMPLATE", "must contain `{code}`"));
        }
        Ok(Self {
            provider,
            twilio,
            template,
        })
    }

    /// Whether free-text messages (`POST /api/sms/send`) have a provider.
    pub fn sends_messages(&self) -> bool {
        self.provider != SmsProviderKind::TwilioVerify
            || self
                .twilio
                .as_ref()
                .is_some_and(|t| t.phone_number.is_some())
    }

    /// Builds the senders these settings ask for, sharing one HTTP client. With a `status_callback`
    /// URL, the Messaging provider asks Twilio to report each message's delivery status there.
    pub fn providers(&self, status_callback: Option<String>) -> anyhow::Result<Providers> {
        if self.provider == SmsProviderKind::Console {
            let console: Arc<dyn SmsSender> = Arc::new(ConsoleSender::new(self.template.clone()));
            return Ok(Providers {
                codes: console.clone(),
                messages: Some(console),
            });
        }
        let twilio = self
            .twilio
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("Twilio credentials are missing"))?;
        let client = TwilioClient::new(twilio)?;
        let messaging: Option<Arc<dyn SmsSender>> = match &twilio.phone_number {
            Some(from) => Some(Arc::new(TwilioMessagingSender::new(
                client.clone(),
                &twilio.api_base_url,
                from.clone(),
                self.template.clone(),
                status_callback,
            ))),
            None => None,
        };
        let codes: Arc<dyn SmsSender> =
            match (self.provider, &twilio.verify_service_sid) {
                (SmsProviderKind::TwilioVerify, Some(service)) => Arc::new(
                    TwilioVerifySender::new(client, &twilio.verify_base_url, service),
                ),
                (SmsProviderKind::TwilioVerify, None) => {
                    anyhow::bail!("TWILIO_VERIFY_SERVICE_SID is not set")
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
}

impl TwilioSettings {
    /// `None` when no credentials are set; both or neither of the SID and token.
    fn from_vars(vars: &Vars<'_>) -> Result<Option<Self>, ConfigError> {
        let (account_sid, auth_token) = match (
            vars.string("TWILIO_ACCOUNT_SID"),
            vars.string("TWILIO_AUTH_TOKEN"),
        ) {
            (Some(sid), Some(token)) => (sid, token),
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TWILIO_AUTH_TOKEN",
                    "must be set together with TWILIO_ACCOUNT_SID",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TWILIO_ACCOUNT_SID",
                    "must be set together with TWILIO_AUTH_TOKEN",
                ));
            }
        };
        if !account_sid.starts_with("AC") {
            return Err(ConfigError::new(
                "TWILIO_ACCOUNT_SID",
                "an Account SID starts with `AC`",
            ));
        }
        let verify_service_sid = vars.string("TWILIO_VERIFY_SERVICE_SID");
        if verify_service_sid
            .as_ref()
            .is_some_and(|sid| !sid.starts_with("VA"))
        {
            return Err(ConfigError::new(
                "TWILIO_VERIFY_SERVICE_SID",
                "a Verify Service SID starts with `VA`",
            ));
        }
        let phone_number = vars.string("TWILIO_PHONE_NUMBER");
        if phone_number.as_deref().is_some_and(|n| !is_sender_id(n)) {
            return Err(ConfigError::new(
                "TWILIO_PHONE_NUMBER",
                "must be an E.164 number such as +15017122661 (or a Messaging Service SID, MG…)",
            ));
        }
        Ok(Some(Self {
            account_sid,
            auth_token: SecretString::from(auth_token),
            verify_service_sid,
            phone_number,
            api_base_url: vars.url("TWILIO_API_BASE_URL", "https://api.twilio.com")?,
            verify_base_url: vars.url("TWILIO_VERIFY_BASE_URL", "https://verify.twilio.com")?,
            connect_timeout: vars.millis("TWILIO_CONNECT_TIMEOUT_MS", 3_000, 1, 60_000)?,
            request_timeout: vars.millis("TWILIO_TIMEOUT_MS", 10_000, 1, 120_000)?,
            max_retries: vars.count("TWILIO_MAX_RETRIES", 2, 0, 10)?,
            retry_base: vars.millis("TWILIO_RETRY_BASE_MS", 250, 1, 60_000)?,
        }))
    }
}

/// Our own sender, checked for form only: Twilio knows which numbers the account owns, and leaving
/// libphonenumber out of configuration parsing lets its metadata load overlap the database
/// connection at start-up.
fn is_sender_id(value: &str) -> bool {
    let is_e164 = value.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    });
    let is_messaging_service = value
        .strip_prefix("MG")
        .is_some_and(|sid| sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()));
    is_e164 || is_messaging_service
}

#[cfg(test)]
mod tests {
    use crate::config::tests::config;

    use super::SmsProviderKind;

    #[test]
    fn auto_picks_verify_then_messaging_then_console() {
        let base = [("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")];
        let mut verify = base.to_vec();
        verify.push(("TWILIO_VERIFY_SERVICE_SID", "VA1"));
        verify.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&verify).unwrap().sms.provider,
            SmsProviderKind::TwilioVerify
        );
        let mut messaging = base.to_vec();
        messaging.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&messaging).unwrap().sms.provider,
            SmsProviderKind::TwilioMessaging
        );
        assert_eq!(
            config(&base).unwrap().sms.provider,
            SmsProviderKind::Console
        );
    }

    #[test]
    fn an_explicit_provider_without_credentials_names_the_missing_variable() {
        let err = config(&[("SMS_PROVIDER", "twilio-messaging")]).unwrap_err();
        assert_eq!(err.variable, "TWILIO_ACCOUNT_SID");
        let err = config(&[
            ("SMS_PROVIDER", "twilio-verify"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "t"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "TWILIO_VERIFY_SERVICE_SID");
    }

    #[test]
    fn the_sender_must_be_an_e164_number_or_a_messaging_service_sid() {
        let with_sender = |sender: &str| {
            config(&[
                ("TWILIO_ACCOUNT_SID", "AC1"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_PHONE_NUMBER", sender),
            ])
        };
        for good in [
            "+15017122661",
            "+6834001",
            "MG0123456789abcdef0123456789ABCDEF",
        ] {
            let config = with_sender(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(config.sms.provider, SmsProviderKind::TwilioMessaging);
        }
        for bad in [
            "15017122661",
            "+1 501 712 2661",
            "+05017122661",
            "+1234567890123456",
            "MG123",
            "MGzz23456789abcdef0123456789abcdef",
        ] {
            let err = with_sender(bad).unwrap_err();
            assert_eq!(err.variable, "TWILIO_PHONE_NUMBER", "{bad}");
        }
    }
}
