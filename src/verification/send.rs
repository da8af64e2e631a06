//! Sending: reserve a send in the database (limits, new code), hand the code or a custom SMS to the
//! provider in a task the client cannot cancel, record the provider's answer, and undo the
//! reservation when the send failed.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::Instrument;
use uuid::Uuid;

use super::{CodeSent, Verifier, ip_key};
use crate::domain::{Channel, PhoneNumber, VerificationCode};
use crate::error::Error;
use crate::sms::{SentMessage, SmsError, SmsSender};
use crate::storage::{CounterCap, NewMessage, NewSend, SendKind};

impl Verifier {
    /// Issues a new code for `phone` and sends it: reserve (limits, new code) in the database, send,
    /// and undo the reservation if the SMS fails.
    pub async fn send_code(
        &self,
        phone: &PhoneNumber,
        kind: SendKind,
        client_ip: Option<IpAddr>,
    ) -> Result<CodeSent, Error> {
        let now = self.now();
        let test_code = self.test_code(phone);
        // Our own code, unless the provider makes it (Twilio Verify); test numbers always use ours.
        let code = match &test_code {
            Some(code) => Some(code.clone()),
            None if self.sms.checks_codes() => None,
            None => Some(VerificationCode::generate(self.settings.code_length)),
        };
        let expires_at = now + self.settings.code_ttl;
        let outcome = self
            .storage
            .reserve_send(NewSend {
                phone,
                kind,
                code_hash: code.as_ref().map(|c| self.hasher.hash(phone, c)),
                now,
                expires_at,
                cooldown: self.settings.resend_cooldown,
                max_sends_per_hour: self.settings.max_sends_per_hour,
                new_verification_id: Uuid::new_v4(),
                send_id: Uuid::new_v4(),
                channel: Channel::Sms,
                provider: test_code.is_none().then(|| self.sms.name()),
                ip_cap: match (client_ip, self.settings.max_sends_per_ip_per_hour) {
                    (Some(ip), max) if max > 0 => Some(CounterCap {
                        key: ip_key(ip),
                        max,
                    }),
                    _ => None,
                },
                country_cap: match self.settings.max_sends_per_country_per_hour {
                    0 => None,
                    max => Some(CounterCap {
                        key: phone.region().unwrap_or("XX").to_string(),
                        max,
                    }),
                },
                // Test numbers send nothing: never counted, never refused.
                fraud: match test_code {
                    Some(_) => None,
                    None => self.fraud.check(phone, now),
                },
            })
            .await?;
        let reservation = self.reserved(phone, outcome)?;

        if test_code.is_some() {
            crate::metrics::test_number_send();
            tracing::info!(phone = %phone.masked(), "test number: fixed code, no SMS sent");
        } else {
            // The SMS and the undo run in their own task: a client that hangs up mid-request must
            // not leave a reservation that counts against the limits for a message never sent.
            let this = self.clone();
            let phone_owned = phone.clone();
            let task_reservation = reservation.clone();
            tokio::spawn(async move {
                let result = this.sms.send_code(&phone_owned, code.as_ref()).await;
                crate::metrics::sms_send(this.sms.name(), result.as_ref().map(|_| ()));
                this.record_answer(task_reservation.send_id, &result).await;
                if let Err(e) = &result {
                    tracing::warn!(phone = %phone_owned.masked(), provider = this.sms.name(), error = %e, "SMS send failed");
                    if let Err(release) = this
                        .storage
                        .release_send(&phone_owned, &task_reservation)
                        .await
                    {
                        tracing::error!(error = ?release, "could not release a failed send's reservation");
                    }
                }
                result
            }.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("SMS task failed: {e}")))??;
        }

        tracing::info!(
            phone = %phone.masked(),
            verification_id = %reservation.verification_id,
            provider = self.sms.name(),
            "verification code sent"
        );
        Ok(CodeSent {
            verification_id: reservation.verification_id,
            expires_at,
            expires_in: self.settings.code_ttl,
            resend_after: self.settings.resend_cooldown,
        })
    }

    /// A custom SMS (the internal endpoint) through `sender`, with its message record. Returns the
    /// record's id.
    pub async fn send_message(
        &self,
        sender: &Arc<dyn SmsSender>,
        phone: &PhoneNumber,
        body: &str,
    ) -> Result<(Uuid, SentMessage), Error> {
        self.check_not_blocked(phone).await?;
        let message_id = Uuid::new_v4();
        self.storage
            .record_message(&NewMessage {
                message_id,
                phone,
                channel: Channel::Sms,
                provider: sender.name(),
                now: self.now(),
            })
            .await?;
        // Like a code, in a task of its own: the record learns the answer even if the client left.
        let (sender, phone, body, this) = (
            sender.clone(),
            phone.clone(),
            body.to_string(),
            self.clone(),
        );
        let sent = tokio::spawn(
            async move {
                let result = sender.send_message(&phone, &body).await;
                this.record_answer(message_id, &result).await;
                result
            }
            .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("SMS task failed: {e}")))??;
        Ok((message_id, sent))
    }

    /// The provider's answer, into the message record. A record that cannot be written is logged,
    /// not failed: the message went (or did not) either way.
    async fn record_answer(&self, message_id: Uuid, result: &Result<SentMessage, SmsError>) {
        let (status, provider_id, error_code) = match result {
            Ok(sent) => (sent.status, sent.provider_message_id.as_deref(), None),
            Err(e) => (
                e.message_status(),
                None,
                e.provider_code().map(|c| c.to_string()),
            ),
        };
        if let Err(e) = self
            .storage
            .message_answered(
                message_id,
                status,
                provider_id,
                error_code.as_deref(),
                self.now(),
            )
            .await
        {
            tracing::error!(error = ?e, %message_id, "could not record the provider's answer");
        }
    }
}
