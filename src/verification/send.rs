//! Sending: reserve a send in the database (limits, new code), hand the code or a custom SMS to the
//! provider in a task the client cannot cancel, record the provider's answer, and undo the
//! reservation when the send failed.

use std::net::IpAddr;

use tracing::Instrument;
use uuid::Uuid;

use super::{CodeSent, Verifier, ip_key};
use crate::domain::{Channel, PhoneNumber, VerificationCode};
use crate::error::Error;
use crate::sms::{Failover, SendContext, SentMessage, SmsError};
use crate::storage::{CounterCap, FailoverAttempt, NewMessage, NewSend, Reservation, SendKind};

/// What a send hands to each provider it tries: the same code, or the same text.
enum Outgoing {
    Code(Option<VerificationCode>),
    Text(String),
}

/// A message that a provider took.
#[derive(Debug, Clone)]
pub struct MessageSent {
    /// The record of the attempt that went through.
    pub message_id: Uuid,
    /// The provider that took it (for logs; clients are not told).
    pub provider: &'static str,
    pub sent: SentMessage,
}

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

        let mut provider = "none";
        if test_code.is_some() {
            crate::metrics::test_number_send();
            tracing::info!(phone = %phone.masked(), "test number: fixed code, no SMS sent");
        } else {
            // The SMS and the undo run in their own task: a client that hangs up mid-request must
            // not leave a reservation that counts against the limits for a message never sent.
            let this = self.clone();
            let phone_owned = phone.clone();
            let task_reservation = reservation.clone();
            let sent = tokio::spawn(async move {
                let outgoing = Outgoing::Code(code);
                let first = SendContext {
                    message_id: task_reservation.send_id,
                    verification_id: Some(task_reservation.verification_id),
                };
                let result = this.send_with_failover(&this.sms, &phone_owned, &outgoing, first).await;
                if let Err((_, last_message_id)) = &result {
                    // Every provider failed (or refused): the code never went, so the send stops
                    // counting and the code, as carried by the last attempt, is void.
                    let release = Reservation {
                        send_id: *last_message_id,
                        ..task_reservation
                    };
                    if let Err(release) = this.storage.release_send(&phone_owned, &release).await {
                        tracing::error!(error = ?release, "could not release a failed send's reservation");
                    }
                }
                result.map_err(|(e, _)| e)
            }.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("SMS task failed: {e}")))??;
            provider = sent.provider;
        }

        tracing::info!(
            phone = %phone.masked(),
            verification_id = %reservation.verification_id,
            provider,
            "verification code sent"
        );
        Ok(CodeSent {
            verification_id: reservation.verification_id,
            expires_at,
            expires_in: self.settings.code_ttl,
            resend_after: self.settings.resend_cooldown,
        })
    }

    /// A custom SMS (the internal endpoint) through `senders`, in failover order, with a message
    /// record per attempt.
    pub async fn send_message(
        &self,
        senders: &Failover,
        phone: &PhoneNumber,
        body: &str,
    ) -> Result<MessageSent, Error> {
        self.check_not_blocked(phone).await?;
        let message_id = Uuid::new_v4();
        self.storage
            .record_message(&NewMessage {
                message_id,
                phone,
                channel: Channel::Sms,
                provider: senders.name(),
                now: self.now(),
            })
            .await?;
        // Like a code, in a task of its own: the record learns the answer even if the client left.
        let (senders, phone, this) = (senders.clone(), phone.clone(), self.clone());
        let outgoing = Outgoing::Text(body.to_string());
        let first = SendContext {
            message_id,
            verification_id: None,
        };
        tokio::spawn(
            async move {
                this.send_with_failover(&senders, &phone, &outgoing, first)
                    .await
                    .map_err(|(e, _)| e)
            }
            .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("SMS task failed: {e}")))?
    }

    /// Hands `outgoing` to each provider in turn until one takes it, moving on only when one was
    /// unavailable: the same code or text each time, a message record per attempt (the first is
    /// `first.message_id`, already written), each answer recorded and counted under the provider
    /// that gave it. On failure, also returns the id of the last attempt's message.
    async fn send_with_failover(
        &self,
        senders: &Failover,
        phone: &PhoneNumber,
        outgoing: &Outgoing,
        first: SendContext,
    ) -> Result<MessageSent, (Error, Uuid)> {
        let mut context = first;
        let mut index = 0;
        let mut sender = senders.primary();
        loop {
            let result = match outgoing {
                Outgoing::Code(code) => sender.send_code(phone, code.as_ref(), &context).await,
                Outgoing::Text(body) => sender.send_message(phone, body, &context).await,
            };
            crate::metrics::sms_send(sender.name(), result.as_ref().map(|_| ()));
            self.record_answer(context.message_id, &result).await;
            let error = match result {
                Ok(sent) => {
                    return Ok(MessageSent {
                        message_id: context.message_id,
                        provider: sender.name(),
                        sent,
                    });
                }
                Err(e) => e,
            };
            let Some(next) = senders.next_after(index, &error) else {
                tracing::warn!(phone = %phone.masked(), provider = sender.name(), error = %error, "SMS send failed");
                return Err((error.into(), context.message_id));
            };
            tracing::warn!(
                phone = %phone.masked(),
                provider = sender.name(),
                next = next.name(),
                error = %error,
                "SMS provider unavailable: trying the next one"
            );
            let previous = context.message_id;
            context.message_id = Uuid::new_v4();
            let record = NewMessage {
                message_id: context.message_id,
                phone,
                channel: Channel::Sms,
                provider: next.name(),
                now: self.now(),
            };
            let recorded = match context.verification_id {
                Some(verification_id) => {
                    let attempt = FailoverAttempt {
                        verification_id,
                        replaces: previous,
                    };
                    self.storage.record_failover_attempt(&record, attempt).await
                }
                None => self.storage.record_message(&record).await,
            };
            // No record, no send: a message nobody can look up or report on is not sent.
            if let Err(e) = recorded {
                return Err((e.into(), previous));
            }
            index += 1;
            sender = next;
        }
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
