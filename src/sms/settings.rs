//! The SMS settings (`SMS_PROVIDER`, `TWILIO_*`, `SMS_WEBHOOK_*`, and the templates of
//! `templates.rs`) and the providers they build.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::twilio::TwilioClient;
use super::{
    ConsoleSender, Failover, SmsSender, Templates, TwilioMessagingSender, TwilioVerifySender,
    WebhookSender, WebhookSettings, WhatsappSender,
};
use crate::config::{ConfigError, Vars};
use crate::domain::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProviderKind {
    Console,
    TwilioVerify,
    TwilioMessaging,
    Webhook,
}

impl SmsProviderKind {
    const ALL: [SmsProviderKind; 4] = [
        Self::Console,
        Self::TwilioVerify,
        Self::TwilioMessaging,
        Self::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::TwilioVerify => "twilio-verify",
            Self::TwilioMessaging => "twilio-messaging",
            Self::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// The code-sending providers in failover order: never empty, and `twilio-verify` only alone.
    pub chain: Vec<SmsProviderKind>,
    pub twilio: Option<TwilioSettings>,
    pub webhook: Option<WebhookSettings>,
    /// The text of the code messages that this service writes, per locale, with the autofill lines.
    pub templates: Templates,
}

#[derive(Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub verify_service_sid: Option<String>,
    pub phone_number: Option<String>,
    /// `TWILIO_WHATSAPP_FROM` and `TWILIO_WHATSAPP_CONTENT_SID`, set together.
    pub whatsapp: Option<WhatsappSender>,
    /// `TWILIO_VOICE_FROM`: the voice-capable number calls come from.
    pub voice_from: Option<String>,
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
            .field("whatsapp", &self.whatsapp)
            .field("voice_from", &self.voice_from)
            .field("api_base_url", &self.api_base_url)
            .field("verify_base_url", &self.verify_base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

/// The configured providers: those for codes, those for free-text messages (the internal
/// endpoint), each in failover order.
#[derive(Clone)]
pub struct Providers {
    pub codes: Failover,
    /// The code providers that can send text; with Verify alone, Messaging if `TWILIO_PHONE_NUMBER`
    /// is set, else `None`.
    pub messages: Option<Failover>,
}

impl SmsSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let twilio = TwilioSettings::from_vars(vars)?;
        let webhook = WebhookSettings::from_vars(vars)?;
        let chain = match provider_list(vars)? {
            Some(list) => list,
            None => vec![match (&twilio, &webhook) {
                (Some(t), _) if t.verify_service_sid.is_some() => SmsProviderKind::TwilioVerify,
                (Some(t), _) if t.phone_number.is_some() => SmsProviderKind::TwilioMessaging,
                (_, Some(_)) => SmsProviderKind::Webhook,
                _ => SmsProviderKind::Console,
            }],
        };
        for &provider in &chain {
            check_requirements(vars, provider, twilio.as_ref(), webhook.is_some())?;
        }
        Ok(Self {
            chain,
            twilio,
            webhook,
            templates: Templates::from_vars(vars)?,
        })
    }

    /// Whether some configured provider can send codes by `channel`: console, webhook and Verify
    /// serve every channel, Messaging SMS always, WhatsApp and calls when their senders are set.
    pub fn serves(&self, channel: Channel) -> bool {
        self.chain.iter().any(|kind| match kind {
            SmsProviderKind::TwilioMessaging => {
                let twilio = self.twilio.as_ref();
                match channel {
                    Channel::Sms => true,
                    Channel::Whatsapp => twilio.is_some_and(|t| t.whatsapp.is_some()),
                    Channel::Call => twilio.is_some_and(|t| t.voice_from.is_some()),
                }
            }
            _ => true,
        })
    }

    /// The first provider: the one every send tries first.
    pub fn primary(&self) -> SmsProviderKind {
        self.chain[0]
    }

    /// Whether free-text messages (`POST /api/sms/send`) have a provider.
    pub fn sends_messages(&self) -> bool {
        self.primary() != SmsProviderKind::TwilioVerify
            || self
                .twilio
                .as_ref()
                .is_some_and(|t| t.phone_number.is_some())
    }

    /// The webhook provider's settings, when it is one of the providers: then its status reports
    /// (`/webhooks/sms/status`) are taken.
    pub fn webhook_provider(&self) -> Option<&WebhookSettings> {
        self.webhook
            .as_ref()
            .filter(|_| self.chain.contains(&SmsProviderKind::Webhook))
    }

    /// Builds the senders these settings ask for; the Twilio ones share one HTTP client. With a
    /// `status_callback` URL, the Messaging provider asks Twilio to report each message's delivery
    /// status there.
    pub fn providers(&self, status_callback: Option<String>) -> anyhow::Result<Providers> {
        let client = self.twilio.as_ref().map(TwilioClient::new).transpose()?;
        let messaging: Option<Arc<dyn SmsSender>> = match (
            &client,
            self.twilio.as_ref().and_then(|t| t.phone_number.as_ref()),
        ) {
            (Some(client), Some(from)) => {
                let twilio = self.twilio.as_ref().expect("a client has settings");
                Some(Arc::new(TwilioMessagingSender::new(
                    client.clone(),
                    &twilio.api_base_url,
                    from.clone(),
                    twilio.whatsapp.clone(),
                    twilio.voice_from.clone(),
                    status_callback,
                )))
            }
            _ => None,
        };
        let mut codes: Vec<Arc<dyn SmsSender>> = Vec::new();
        for &kind in &self.chain {
            codes.push(match kind {
                SmsProviderKind::Console => Arc::new(ConsoleSender::new()),
                SmsProviderKind::TwilioMessaging => messaging
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("TWILIO_PHONE_NUMBER is not set"))?,
                SmsProviderKind::TwilioVerify => {
                    let (Some(client), Some(twilio)) = (&client, &self.twilio) else {
                        anyhow::bail!("Twilio credentials are missing");
                    };
                    let service = twilio
                        .verify_service_sid
                        .as_deref()
                        .ok_or_else(|| anyhow::anyhow!("TWILIO_VERIFY_SERVICE_SID is not set"))?;
                    Arc::new(TwilioVerifySender::new(
                        client.clone(),
                        &twilio.verify_base_url,
                        service,
                        self.templates.android_app_hash().map(str::to_string),
                    ))
                }
                SmsProviderKind::Webhook => {
                    let settings = self
                        .webhook
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("SMS_WEBHOOK_URL is not set"))?;
                    Arc::new(WebhookSender::new(settings)?)
                }
            });
        }
        let codes = Failover::new(codes).ok_or_else(|| anyhow::anyhow!("no SMS provider"))?;
        // Verify cannot send text and stands alone; any other list sends text the same way.
        let messages = if codes.primary().checks_codes() {
            messaging.map(Failover::single)
        } else {
            Some(codes.clone())
        };
        Ok(Providers { codes, messages })
    }
}

/// `SMS_PROVIDER`: `None` for `auto` or unset, else the list, each name once. Verify makes and
/// checks its own codes, so no other provider could take over a send of it.
fn provider_list(vars: &Vars<'_>) -> Result<Option<Vec<SmsProviderKind>>, ConfigError> {
    let names = vars.list("SMS_PROVIDER");
    if names.is_empty() || names == ["auto"] {
        return Ok(None);
    }
    let mut list = Vec::new();
    for name in &names {
        let kind = SmsProviderKind::parse(name).ok_or_else(|| {
            ConfigError::new(
                "SMS_PROVIDER",
                format!(
                    "expected `auto` or a comma-separated list of `console`, `twilio-verify`, \
                     `twilio-messaging`, `webhook`; got `{name}`"
                ),
            )
        })?;
        if list.contains(&kind) {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                format!("`{name}` is listed twice"),
            ));
        }
        list.push(kind);
    }
    if list.len() > 1 && list.contains(&SmsProviderKind::TwilioVerify) {
        return Err(ConfigError::new(
            "SMS_PROVIDER",
            "`twilio-verify` keeps its own codes and cannot be combined with other providers",
        ));
    }
    Ok(Some(list))
}

/// What a listed provider needs, named by the first missing variable.
fn check_requirements(
    vars: &Vars<'_>,
    provider: SmsProviderKind,
    twilio: Option<&TwilioSettings>,
    has_webhook: bool,
) -> Result<(), ConfigError> {
    let required = |name: &'static str| {
        ConfigError::new(
            name,
            format!("required by SMS_PROVIDER={}", provider.as_str()),
        )
    };
    match provider {
        SmsProviderKind::Console => Ok(()),
        SmsProviderKind::Webhook if has_webhook => Ok(()),
        SmsProviderKind::Webhook => Err(required("SMS_WEBHOOK_URL")),
        SmsProviderKind::TwilioVerify | SmsProviderKind::TwilioMessaging => {
            let Some(t) = twilio else {
                return Err(required(if vars.string("TWILIO_ACCOUNT_SID").is_none() {
                    "TWILIO_ACCOUNT_SID"
                } else {
                    "TWILIO_AUTH_TOKEN"
                }));
            };
            match provider {
                SmsProviderKind::TwilioVerify if t.verify_service_sid.is_none() => {
                    Err(required("TWILIO_VERIFY_SERVICE_SID"))
                }
                SmsProviderKind::TwilioMessaging if t.phone_number.is_none() => {
                    Err(required("TWILIO_PHONE_NUMBER"))
                }
                _ => Ok(()),
            }
        }
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
        let whatsapp = match (
            vars.string("TWILIO_WHATSAPP_FROM"),
            vars.string("TWILIO_WHATSAPP_CONTENT_SID"),
        ) {
            (None, None) => None,
            (Some(from), Some(content_sid)) => {
                if !is_sender_id(&from) {
                    return Err(ConfigError::new(
                        "TWILIO_WHATSAPP_FROM",
                        "must be the WhatsApp sender's E.164 number such as +15017122661 (or a Messaging Service SID, MG…)",
                    ));
                }
                if !is_sid(&content_sid, "HX") {
                    return Err(ConfigError::new(
                        "TWILIO_WHATSAPP_CONTENT_SID",
                        "must be the Content SID (HX and 32 hex digits) of an approved authentication template",
                    ));
                }
                Some(WhatsappSender { from, content_sid })
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TWILIO_WHATSAPP_CONTENT_SID",
                    "required with TWILIO_WHATSAPP_FROM: WhatsApp codes need an approved authentication template",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TWILIO_WHATSAPP_FROM",
                    "required with TWILIO_WHATSAPP_CONTENT_SID",
                ));
            }
        };
        let voice_from = vars.string("TWILIO_VOICE_FROM");
        if voice_from
            .as_deref()
            .is_some_and(|n| !is_sender_id(n) || n.starts_with("MG"))
        {
            return Err(ConfigError::new(
                "TWILIO_VOICE_FROM",
                "must be a voice-capable E.164 number such as +15017122661",
            ));
        }
        Ok(Some(Self {
            account_sid,
            auth_token: SecretString::from(auth_token),
            verify_service_sid,
            phone_number,
            whatsapp,
            voice_from,
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
    is_e164 || is_sid(value, "MG")
}

/// A Twilio SID: its two-letter prefix and 32 hex digits.
fn is_sid(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|sid| sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::config;

    use super::SmsProviderKind;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn auto_picks_verify_then_messaging_then_webhook_then_console() {
        let hook = [
            ("SMS_WEBHOOK_URL", "http://gateway.local/sms"),
            ("SMS_WEBHOOK_SECRET", SECRET),
        ];
        let mut base = vec![("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")];
        base.extend(hook);
        let mut verify = base.clone();
        verify.push(("TWILIO_VERIFY_SERVICE_SID", "VA1"));
        verify.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&verify).unwrap().sms.chain,
            [SmsProviderKind::TwilioVerify]
        );
        let mut messaging = base.clone();
        messaging.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&messaging).unwrap().sms.chain,
            [SmsProviderKind::TwilioMessaging]
        );
        assert_eq!(config(&base).unwrap().sms.chain, [SmsProviderKind::Webhook]);
        for auto in [vec![], vec![("SMS_PROVIDER", "auto")]] {
            assert_eq!(config(&auto).unwrap().sms.chain, [SmsProviderKind::Console]);
        }
    }

    #[test]
    fn a_list_is_the_failover_order() {
        let c = config(&[
            ("SMS_PROVIDER", "twilio-messaging, webhook"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_PHONE_NUMBER", "+15017122661"),
            ("SMS_WEBHOOK_URL", "http://gateway.local/sms"),
            ("SMS_WEBHOOK_SECRET", SECRET),
        ])
        .unwrap();
        assert_eq!(
            c.sms.chain,
            [SmsProviderKind::TwilioMessaging, SmsProviderKind::Webhook]
        );
        let hook = c.sms.webhook_provider().expect("the webhook is a provider");
        assert_eq!(hook.max_retries, 2);
        assert_eq!(hook.timeout, std::time::Duration::from_secs(10));
    }

    #[test]
    fn bad_lists_and_webhook_settings_name_their_variable() {
        let hook = [
            ("SMS_WEBHOOK_URL", "http://gateway.local/sms"),
            ("SMS_WEBHOOK_SECRET", SECRET),
        ];
        let short = format!("whsec_{}", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="); // 23 bytes
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("SMS_PROVIDER", "webhook,webhook")], "SMS_PROVIDER"),
            (vec![("SMS_PROVIDER", "console,pigeon")], "SMS_PROVIDER"),
            (
                vec![("SMS_PROVIDER", "twilio-verify,webhook")],
                "SMS_PROVIDER",
            ),
            (
                vec![("SMS_PROVIDER", "webhook,twilio-verify")],
                "SMS_PROVIDER",
            ),
            (vec![("SMS_PROVIDER", "webhook")], "SMS_WEBHOOK_URL"),
            (vec![("SMS_WEBHOOK_URL", "http://g/")], "SMS_WEBHOOK_SECRET"),
            (
                vec![
                    ("SMS_WEBHOOK_URL", "http://g/"),
                    ("SMS_WEBHOOK_SECRET", "secret"),
                ],
                "SMS_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("SMS_WEBHOOK_URL", "http://g/"),
                    ("SMS_WEBHOOK_SECRET", &short),
                ],
                "SMS_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("SMS_WEBHOOK_URL", "ftp://g/"),
                    ("SMS_WEBHOOK_SECRET", SECRET),
                ],
                "SMS_WEBHOOK_URL",
            ),
            (
                [hook.as_slice(), &[("SMS_WEBHOOK_MAX_RETRIES", "11")]].concat(),
                "SMS_WEBHOOK_MAX_RETRIES",
            ),
            (
                [hook.as_slice(), &[("SMS_WEBHOOK_TIMEOUT_MS", "99")]].concat(),
                "SMS_WEBHOOK_TIMEOUT_MS",
            ),
            (
                [hook.as_slice(), &[("SMS_WEBHOOK_TIMEOUT_MS", "60001")]].concat(),
                "SMS_WEBHOOK_TIMEOUT_MS",
            ),
        ];
        for (vars, variable) in cases {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.variable, variable, "{vars:?}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
            assert!(!err.to_string().contains("MfKQ9r8"), "no secret: {err}");
        }
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
            assert_eq!(config.sms.chain, [SmsProviderKind::TwilioMessaging]);
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
