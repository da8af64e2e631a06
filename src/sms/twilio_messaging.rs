//! The Twilio Messaging provider: our own code (or free text) as an SMS through `Messages.json`.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::twilio::TwilioClient;
use super::{SendContext, SentMessage, SmsError, SmsSender, missing_code, render_template};
use crate::domain::{MessageStatus, PhoneNumber, VerificationCode};

/// Sends our own codes, and free text, through the Programmable Messaging API (`Messages.json`).
#[derive(Debug, Clone)]
pub struct TwilioMessagingSender {
    client: TwilioClient,
    url: String,
    from: String,
    template: String,
    /// `StatusCallback` sent with every message, so nothing needs setting in Twilio's console.
    status_callback: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
}

impl TwilioMessagingSender {
    pub(crate) fn new(
        client: TwilioClient,
        base_url: &str,
        from: String,
        template: String,
        status_callback: Option<String>,
    ) -> Self {
        let url = format!(
            "{base_url}/2010-04-01/Accounts/{}/Messages.json",
            client.account_sid()
        );
        Self {
            client,
            url,
            from,
            template,
            status_callback,
        }
    }

    async fn send_text(&self, to: &PhoneNumber, body: &str) -> Result<SentMessage, SmsError> {
        // A Messaging Service SID (MG…) goes in its own field and lets Twilio pick the sender.
        let from_field = if self.from.starts_with("MG") {
            "MessagingServiceSid"
        } else {
            "From"
        };
        let mut form = vec![
            ("To", to.as_ref()),
            (from_field, self.from.as_str()),
            ("Body", body),
        ];
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url.as_str()));
        }
        let answer = self.client.post_form(&self.url, &form).await?;
        if !answer.status.is_success() {
            return Err(answer.into_error());
        }
        let resource = serde_json::from_slice::<MessageResource>(&answer.body).ok();
        let (sid, status) = match resource {
            Some(m) => (m.sid, m.status),
            None => (None, None),
        };
        tracing::info!(to = %to.masked(), sid = sid.as_deref().unwrap_or(""), "SMS accepted by Twilio Messaging");
        Ok(SentMessage {
            provider_message_id: sid,
            // Twilio answers `queued` or `accepted`; anything later comes by callback.
            status: status
                .as_deref()
                .and_then(MessageStatus::from_twilio_message)
                .unwrap_or(MessageStatus::Accepted),
        })
    }
}

impl SmsSender for TwilioMessagingSender {
    fn name(&self) -> &'static str {
        "twilio-messaging"
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        code: Option<&'a VerificationCode>,
        _context: &'a SendContext,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            let code = code.ok_or_else(missing_code)?;
            self.send_text(to, &render_template(&self.template, code))
                .await
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
