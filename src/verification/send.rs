//! Sending: reserve a send in the database (limits, new code), hand the code (by its channel) or a
//! custom SMS to the provider in a task the client cannot cancel, record the provider's answer, and
//! undo the reservation when the send failed.

use std::net::IpAddr;

use tracing::Instrument;
use uuid::Uuid;

use super::{CodeSent, Verifier, ip_key};
use crate::domain::{Channel, Locale, PhoneNumber, VerificationCode};
use crate::error::Error;
use crate::sms::{CodeMessage, Failover, SendContext, SentMessage, SmsError};
use crate::storage::{CounterCap, FailoverAttempt, NewMessage, NewSend, Reservation, SendKind};

/// What a send hands to each provider it tries: the same code by the same channel, or the same
/// text.
pub(super) enum Outgoing {
    Code(OutgoingCode),
    Text(String),
}

/// A code, the channel and locale it goes by, and its text (see [`CodeMessage`]).
pub(super) struct OutgoingCode {
    pub code: Option<VerificationCode>,
    pub channel: Channel,
    pub locale: Option<Locale>,
    pub body: Option<String>,
}

impl Outgoing {
    fn channel(&self) -> Channel {
        match self {
            Outgoing::Code(c) => c.channel,
            Outgoing::Text(_) => Channel::Sms,
        }
    }

    fn locale(&self) -> Option<&Locale> {
        match self {
            Outgoing::Code(c) => c.locale.as_ref(),
            Outgoing::Text(_) => None,
        }
    }
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
    /// The channel a request asks for (`sms` when it names none), if `ALLOWED_CHANNELS` lists it
    /// and a provider serves it; else `channel_not_available`.
    pub fn channel(&self, requested: Option<&str>) -> Result<Channel, Error> {
        let channel = match requested {
            None => Some(Channel::Sms),
            Some(name) => Channel::parse(name),
        };
        match channel {
            Some(c) if self.senders_for(c).is_some() => Ok(c),
            _ => Err(self.channel_not_available()),
        }
    }

    /// The providers that send by `channel`, if it is allowed and one serves it.
    pub(super) fn senders_for(&self, channel: Channel) -> Option<&Failover> {
        self.routes
            .get(channel)
            .filter(|_| self.settings.allows(channel))
    }

    fn channel_not_available(&self) -> Error {
        let allowed: Vec<&str> = self
            .settings
            .allowed_channels
            .iter()
            .filter(|c| self.routes.get(**c).is_some())
            .map(|c| c.as_str())
            .collect();
        Error::ChannelNotAvailable {
            allowed: allowed.join(", "),
        }
    }

    /// The code and its text by `channel`: ours (a test number's fixed one, or a fresh one), or
    /// none when the provider makes it (Twilio Verify).
    pub(super) fn new_code(
        &self,
        senders: &Failover,
        test_code: Option<&VerificationCode>,
        channel: Channel,
        locale: Option<&Locale>,
    ) -> OutgoingCode {
        let code = match test_code {
            Some(code) => Some(code.clone()),
            None if senders.checks_codes() => None,
            None => Some(VerificationCode::generate(self.settings.code_length)),
        };
        let body = code.as_ref().map(|c| {
            self.templates
                .render(channel, c, locale, self.settings.code_ttl)
        });
        OutgoingCode {
            code,
            channel,
            locale: locale.cloned(),
            body,
        }
    }

    /// Issues a new code for `phone` and sends it by `channel` (checked with [`Self::channel`]):
    /// reserve (limits, new code) in the database, send, and undo the reservation if the send
    /// fails.
    pub async fn send_code(
        &self,
        phone: &PhoneNumber,
        kind: SendKind,
        client_ip: Option<IpAddr>,
        channel: Channel,
        locale: Option<&Locale>,
    ) -> Result<CodeSent, Error> {
        let senders = self
            .senders_for(channel)
            .ok_or_else(|| self.channel_not_available())?;
        let now = self.now();
        let test_code = self.test_code(phone);
        let outgoing = self.new_code(senders, test_code.as_ref(), channel, locale);
        let expires_at = now + self.settings.code_ttl;
        let outcome = self
            .storage
            .reserve_send(NewSend {
                phone,
                kind,
                code_hash: outgoing.code.as_ref().map(|c| self.hasher.hash(phone, c)),
                now,
                expires_at,
                cooldown: self.settings.resend_cooldown,
                max_sends_per_hour: self.settings.max_sends_per_hour,
                new_verification_id: Uuid::new_v4(),
                send_id: Uuid::new_v4(),
                channel,
                provider: test_code.is_none().then(|| senders.name()),
                ip_cap: match (client_ip, self.settings.max_sends_per_ip_per_hour) {
                    (Some(ip), max) if max > 0 => Some(CounterCap {
                        key: ip_key(ip),
                        max,
                    }),
                    _ => None,
                },
                country_cap: self.country_cap(phone),
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
            let sent = self
                .deliver_code(senders, phone, &reservation, Outgoing::Code(outgoing))
                .await?;
            provider = sent.provider;
        }

        tracing::info!(
            phone = %phone.masked(),
            verification_id = %reservation.verification_id,
            provider,
            channel = channel.as_str(),
            "verification code sent"
        );
        Ok(CodeSent {
            verification_id: reservation.verification_id,
            channel,
            expires_at,
            expires_in: self.settings.code_ttl,
            resend_after: self.settings.resend_cooldown,
        })
    }

    /// The per-country cap a send is counted in, unless it is off.
    pub(super) fn country_cap(&self, phone: &PhoneNumber) -> Option<CounterCap> {
        match self.settings.max_sends_per_country_per_hour {
            0 => None,
            max => Some(CounterCap {
                key: phone.region().unwrap_or("XX").to_string(),
                max,
            }),
        }
    }

    /// Sends a reserved code through `senders` and, if every provider failed (or refused),
    /// releases the reservation: the send stops counting and the code, as carried by the last
    /// attempt, is void. In a task of its own: a client that hangs up mid-request must not leave a
    /// reservation that counts against the limits for a message never sent.
    pub(super) async fn deliver_code(
        &self,
        senders: &Failover,
        phone: &PhoneNumber,
        reservation: &Reservation,
        outgoing: Outgoing,
    ) -> Result<MessageSent, Error> {
        let this = self.clone();
        let (senders, phone, reservation) = (senders.clone(), phone.clone(), reservation.clone());
        tokio::spawn(
            async move {
                let first = SendContext {
                    message_id: reservation.send_id,
                    verification_id: Some(reservation.verification_id),
                };
                let result = this
                    .send_with_failover(&senders, &phone, &outgoing, first)
                    .await;
                if let Err((_, last_message_id)) = &result {
                    let release = Reservation {
                        send_id: *last_message_id,
                        ..reservation
                    };
                    if let Err(release) = this.storage.release_send(&phone, &release).await {
                        tracing::error!(error = ?release, "could not release a failed send's reservation");
                    }
                }
                result.map_err(|(e, _)| e)
            }
            .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("SMS task failed: {e}")))?
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
                Outgoing::Code(c) => {
                    let message = CodeMessage {
                        code: c.code.as_ref(),
                        channel: c.channel,
                        locale: c.locale.as_ref(),
                        body: c.body.as_deref(),
                    };
                    sender.send_code(phone, &message, &context).await
                }
                Outgoing::Text(body) => sender.send_message(phone, body, &context).await,
            };
            crate::metrics::sms_send(sender.name(), result.as_ref().map(|_| ()));
            self.record_answer(context.message_id, &result, outgoing.locale())
                .await;
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
                channel: outgoing.channel(),
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

    /// The provider's answer, into the message record (with the locale, which a fallback sends
    /// in again). A record that cannot be written is logged, not failed: the message went (or did
    /// not) either way.
    async fn record_answer(
        &self,
        message_id: Uuid,
        result: &Result<SentMessage, SmsError>,
        locale: Option<&Locale>,
    ) {
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
                locale.map(|l| l.as_ref()),
                self.now(),
            )
            .await
        {
            tracing::error!(error = ?e, %message_id, "could not record the provider's answer");
        }
    }
}
