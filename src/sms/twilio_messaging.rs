//! The Twilio Messaging provider: our own code (or free text) as an SMS through `Messages.json`,
//! by WhatsApp through the same API with an approved Content template, and by voice through the
//! Calls API.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::twilio::{TwilioAnswer, TwilioClient};
use super::voice;
use super::{CodeMessage, SendContext, SentMessage, SmsError, SmsSender};
use crate::domain::{Channel, MessageStatus, PhoneNumber, VerificationCode};

/// Where WhatsApp codes come from: a WhatsApp sender (E.164, or a Messaging Service SID) and the
/// approved authentication template whose variable `1` is the code.
#[derive(Debug, Clone)]
pub struct WhatsappSender {
    pub from: String,
    pub content_sid: String,
}

/// Sends our own codes, and free text, through the Programmable Messaging API (`Messages.json`),
/// and codes by voice through the Calls API (`Calls.json`).
#[derive(Debug, Clone)]
pub struct TwilioMessagingSender {
    client: TwilioClient,
    url: String,
    calls_url: String,
    from: String,
    whatsapp: Option<WhatsappSender>,
    voice_from: Option<String>,
    /// `StatusCallback` sent with every message and call, so nothing needs setting in Twilio's
    /// console.
    status_callback: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    sid: Option<String>,
    status: Option<String>,
}

impl TwilioMessagingSender {
    pub(crate) fn new(
        client: TwilioClient,
        base_url: &str,
        from: String,
        whatsapp: Option<WhatsappSender>,
        voice_from: Option<String>,
        status_callback: Option<String>,
    ) -> Self {
        let account = format!("{base_url}/2010-04-01/Accounts/{}", client.account_sid());
        Self {
            url: format!("{account}/Messages.json"),
            calls_url: format!("{account}/Calls.json"),
            client,
            from,
            whatsapp,
            voice_from,
            status_callback,
        }
    }

    /// POSTs `form` (plus the status callback) and reads the created resource's sid and status.
    async fn create<'a>(
        &'a self,
        url: &str,
        mut form: Vec<(&'a str, &'a str)>,
        status: fn(&str) -> Option<MessageStatus>,
    ) -> Result<SentMessage, SmsError> {
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let answer: TwilioAnswer = self.client.post_form(url, &form).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error());
        }
        let resource = serde_json::from_slice::<Resource>(&answer.body).ok();
        let (sid, state) = match resource {
            Some(r) => (r.sid, r.status),
            None => (None, None),
        };
        Ok(SentMessage {
            provider_message_id: sid,
            // Twilio answers `queued` or `accepted`; anything later comes by callback.
            status: state
                .as_deref()
                .and_then(status)
                .unwrap_or(MessageStatus::Accepted),
        })
    }

    async fn send_text(&self, to: &PhoneNumber, body: &str) -> Result<SentMessage, SmsError> {
        let form = vec![
            ("To", to.as_ref()),
            sender_field(&self.from),
            ("Body", body),
        ];
        let sent = self
            .create(&self.url, form, MessageStatus::from_twilio_message)
            .await?;
        tracing::info!(to = %to.masked(), sid = sent.provider_message_id.as_deref().unwrap_or(""), "SMS accepted by Twilio Messaging");
        Ok(sent)
    }

    /// A WhatsApp message from the approved template: Twilio fills variable `1` with the code.
    async fn send_whatsapp(
        &self,
        whatsapp: &WhatsappSender,
        to: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<SentMessage, SmsError> {
        let to_address = format!("whatsapp:{to}");
        let from_address;
        let from = if whatsapp.from.starts_with("MG") {
            ("MessagingServiceSid", whatsapp.from.as_str())
        } else {
            from_address = format!("whatsapp:{}", whatsapp.from);
            ("From", from_address.as_str())
        };
        let variables = serde_json::json!({ "1": code.expose() }).to_string();
        let form = vec![
            ("To", to_address.as_str()),
            from,
            ("ContentSid", whatsapp.content_sid.as_str()),
            ("ContentVariables", variables.as_str()),
        ];
        let sent = self
            .create(&self.url, form, MessageStatus::from_twilio_message)
            .await?;
        tracing::info!(to = %to.masked(), sid = sent.provider_message_id.as_deref().unwrap_or(""), "WhatsApp message accepted by Twilio Messaging");
        Ok(sent)
    }

    /// A call that says `text` (the digits one by one) twice, in the locale's language.
    async fn send_call(
        &self,
        from: &str,
        to: &PhoneNumber,
        message: &CodeMessage<'_>,
        text: &str,
    ) -> Result<SentMessage, SmsError> {
        let twiml = voice::twiml(text, voice::say_language(message.locale));
        let form = vec![
            ("To", to.as_ref()),
            ("From", from),
            ("Twiml", twiml.as_str()),
        ];
        let sent = self
            .create(&self.calls_url, form, MessageStatus::from_twilio_call)
            .await?;
        tracing::info!(to = %to.masked(), sid = sent.provider_message_id.as_deref().unwrap_or(""), "call accepted by Twilio");
        Ok(sent)
    }
}

/// A Messaging Service SID (MG…) goes in its own field and lets Twilio pick the sender.
fn sender_field(from: &str) -> (&'static str, &str) {
    if from.starts_with("MG") {
        ("MessagingServiceSid", from)
    } else {
        ("From", from)
    }
}

impl SmsSender for TwilioMessagingSender {
    fn name(&self) -> &'static str {
        "twilio-messaging"
    }

    fn serves(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => true,
            Channel::Whatsapp => self.whatsapp.is_some(),
            Channel::Call => self.voice_from.is_some(),
        }
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        message: &'a CodeMessage<'a>,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let (code, body) = message.ours()?;
            match (message.channel, &self.whatsapp, &self.voice_from) {
                (Channel::Sms, _, _) => self.send_text(to, body).await,
                (Channel::Whatsapp, Some(whatsapp), _) => {
                    self.send_whatsapp(whatsapp, to, code).await
                }
                (Channel::Call, _, Some(from)) => self.send_call(from, to, message, body).await,
                (channel, _, _) => Err(SmsError::Rejected {
                    provider_code: None,
                    message: format!("the Messaging provider is not set up for {channel}"),
                }),
            }
        }
        .boxed()
    }

    fn send_message<'a>(
        &'a self,
        to: &'a PhoneNumber,
        body: &'a str,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move { self.send_text(to, body).await }.boxed()
    }
}
