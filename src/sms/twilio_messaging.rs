use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::twilio::{TwilioClient, map_error};
use super::{SentMessage, SmsError, SmsSender, render_template};
use crate::config::TwilioConfig;
use crate::domain::{PhoneNumber, VerificationCode};

/// Sends our own codes as plain SMS through the Programmable Messaging API (`Messages.json`).
#[derive(Debug, Clone)]
pub struct TwilioMessagingSender {
    client: TwilioClient,
    url: String,
    from: String,
    template: String,
}

#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: Option<String>,
}

impl TwilioMessagingSender {
    pub fn new(config: &TwilioConfig, template: String) -> anyhow::Result<Self> {
        let client = TwilioClient::new(config)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.api_base_url,
            client.account_sid()
        );
        let from = config
            .phone_number
            .clone()
            .ok_or_else(|| anyhow::anyhow!("TWILIO_PHONE_NUMBER is not set"))?;
        Ok(Self {
            client,
            url,
            from,
            template,
        })
    }

    pub async fn send_text(&self, to: &PhoneNumber, body: &str) -> Result<SentMessage, SmsError> {
        // A Messaging Service SID (MG…) goes in its own field and lets Twilio pick the sender.
        let from_field = if self.from.starts_with("MG") {
            "MessagingServiceSid"
        } else {
            "From"
        };
        let form = [
            ("To", to.as_ref()),
            (from_field, self.from.as_str()),
            ("Body", body),
        ];
        let (status, headers, bytes) = self.client.post_form(&self.url, &form).await?;
        if status.is_success() {
            let resource: MessageResource =
                serde_json::from_slice(&bytes).unwrap_or(MessageResource { sid: None });
            tracing::info!(to = %to.masked(), sid = resource.sid.as_deref().unwrap_or(""), "SMS accepted by Twilio");
            return Ok(SentMessage {
                provider_message_id: resource.sid,
            });
        }
        Err(map_error(status, &headers, &bytes))
    }
}

impl SmsSender for TwilioMessagingSender {
    fn name(&self) -> &'static str {
        "twilio-messaging"
    }

    fn send_code<'a>(
        &'a self,
        to: &'a PhoneNumber,
        code: &'a VerificationCode,
    ) -> BoxFuture<'a, Result<SentMessage, SmsError>> {
        async move {
            self.send_text(to, &render_template(&self.template, code))
                .await
        }
        .boxed()
    }
}
