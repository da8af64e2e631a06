//! The verification flow: send a code, check it. Handlers parse requests and call this; this calls
//! storage and the SMS provider, in the order that keeps the limits and the "failed send leaves no
//! usable code" rule true.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

mod settings;

pub use settings::{DEVELOPMENT_CODE_HASH_SECRET, VerificationSettings};

use crate::clock::Clock;
use crate::domain::{Channel, CodeHasher, PhoneNumber, VerificationCode};
use crate::error::{Error, SendCap};
use crate::sms::{ProviderVerdict, SentMessage, SmsError, SmsSender};
use crate::storage::{
    AttemptOutcome, AttemptResult, CapScope, CheckOutcome, CodeCheck, CounterCap, NewMessage,
    NewSend, SendKind, SendOutcome, Storage,
};

#[derive(Debug, Clone)]
pub struct CodeSent {
    pub verification_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub expires_in: Duration,
    pub resend_after: Duration,
}

#[derive(Debug, Clone)]
pub struct Verified {
    pub verification_id: Uuid,
    pub verified_at: OffsetDateTime,
}

#[derive(Clone)]
pub struct Verifier {
    storage: Storage,
    sms: Arc<dyn SmsSender>,
    clock: Arc<dyn Clock>,
    hasher: CodeHasher,
    settings: VerificationSettings,
}

impl Verifier {
    pub fn new(
        storage: Storage,
        sms: Arc<dyn SmsSender>,
        clock: Arc<dyn Clock>,
        hasher: CodeHasher,
        settings: VerificationSettings,
    ) -> Self {
        Self {
            storage,
            sms,
            clock,
            hasher,
            settings,
        }
    }

    pub fn settings(&self) -> &VerificationSettings {
        &self.settings
    }

    /// Times are kept to the millisecond, the precision both backends store.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
            .unwrap_or(now)
    }

    /// Issues a new code for `phone` and sends it: reserve (limits, new code) in the database, send,
    /// and undo the reservation if the SMS fails.
    /// Refuses numbers outside `ALLOWED_COUNTRIES`.
    pub fn check_country(&self, phone: &PhoneNumber) -> Result<(), Error> {
        match &self.settings.allowed_countries {
            Some(allowed)
                if !phone
                    .region()
                    .is_some_and(|r| allowed.iter().any(|a| a == r)) =>
            {
                tracing::info!(phone = %phone.masked(), region = phone.region().unwrap_or("?"), "number outside ALLOWED_COUNTRIES");
                Err(Error::CountryNotAllowed)
            }
            _ => Ok(()),
        }
    }

    /// The fixed code of a test number, if `phone` is one.
    fn test_code(&self, phone: &PhoneNumber) -> Option<VerificationCode> {
        let code = self.settings.test_numbers.get(phone.as_ref())?;
        VerificationCode::parse(code, self.settings.code_length).ok()
    }

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
            })
            .await?;
        let reservation = match outcome {
            SendOutcome::Reserved(r) => r,
            SendOutcome::TooSoon { retry_after } => {
                tracing::info!(phone = %phone.masked(), "send refused: cooldown");
                return Err(Error::ResendTooSoon { retry_after });
            }
            SendOutcome::HourlyCapReached { retry_after } => {
                tracing::info!(phone = %phone.masked(), "send refused: hourly cap for the number");
                return Err(Error::TooManySends {
                    retry_after,
                    cap: SendCap::PhoneNumber,
                });
            }
            SendOutcome::NotFound => return Err(Error::VerificationNotFound),
            SendOutcome::CapReached { scope, retry_after } => {
                tracing::info!(phone = %phone.masked(), cap = scope.as_str(), "send refused: hourly cap");
                return Err(Error::TooManySends {
                    retry_after,
                    cap: match scope {
                        CapScope::ClientIp => SendCap::ClientIp,
                        CapScope::Country => SendCap::Country,
                    },
                });
            }
        };
        for (scope, key) in &reservation.filled {
            // Exactly one send per window fills a counter, so this logs once per country per hour
            // across all instances.
            match scope {
                CapScope::Country => tracing::warn!(
                    country = %key,
                    cap = self.settings.max_sends_per_country_per_hour,
                    "hourly send cap for this country reached: further sends are refused until the next hour (possible SMS pumping)"
                ),
                CapScope::ClientIp => tracing::info!(
                    cap = self.settings.max_sends_per_ip_per_hour,
                    "hourly send cap for a client IP reached"
                ),
            }
        }

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

    /// Checks a code typed by the user. The caller has parsed it already.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<Verified, Error> {
        let result = self.check(phone, code).await;
        crate::metrics::verification(result.as_ref().map(|_| ()));
        result
    }

    async fn check(&self, phone: &PhoneNumber, code: &VerificationCode) -> Result<Verified, Error> {
        if self.sms.checks_codes() && self.test_code(phone).is_none() {
            return self.verify_with_provider(phone, code).await;
        }
        let now = self.now();
        let outcome = self
            .storage
            .check_code(CodeCheck {
                phone,
                code_hash: self.hasher.hash(phone, code),
                now,
                max_attempts: self.settings.max_verify_attempts,
            })
            .await?;
        match outcome {
            CheckOutcome::Approved {
                verification_id,
                verified_at,
            } => {
                tracing::info!(phone = %phone.masked(), %verification_id, "phone number verified");
                Ok(Verified {
                    verification_id,
                    verified_at,
                })
            }
            CheckOutcome::WrongCode { attempts_remaining } => {
                tracing::info!(phone = %phone.masked(), attempts_remaining, "wrong code");
                Err(Error::InvalidCode { attempts_remaining })
            }
            CheckOutcome::NotFound => Err(Error::VerificationNotFound),
            CheckOutcome::Expired => Err(Error::CodeExpired),
            CheckOutcome::MaxAttemptsReached => Err(Error::MaxAttemptsReached),
        }
    }

    /// Twilio Verify keeps the code: take an attempt here (so our limits hold whatever Twilio's
    /// settings), ask Twilio, then record its answer. Runs in its own task so that a client hanging
    /// up cannot leave an attempt half-recorded.
    async fn verify_with_provider(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<Verified, Error> {
        let this = self.clone();
        let phone = phone.clone();
        let code = code.clone();
        tokio::spawn(
            async move { this.provider_check(&phone, &code).await }
                .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("verification task failed: {e}")))?
    }

    async fn provider_check(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
    ) -> Result<Verified, Error> {
        let max = self.settings.max_verify_attempts;
        let now = self.now();
        let (verification_id, attempts_remaining) =
            match self.storage.take_attempt(phone, now, max).await? {
                AttemptOutcome::Taken {
                    verification_id,
                    attempts_remaining,
                } => (verification_id, attempts_remaining),
                AttemptOutcome::Refused(CheckOutcome::Expired) => return Err(Error::CodeExpired),
                AttemptOutcome::Refused(CheckOutcome::MaxAttemptsReached) => {
                    return Err(Error::MaxAttemptsReached);
                }
                AttemptOutcome::Refused(_) => return Err(Error::VerificationNotFound),
            };
        let verdict = self.sms.check_code(phone, code).await;
        let finish = |result| {
            self.storage
                .finish_attempt(phone, verification_id, result, self.now(), max)
        };
        match verdict {
            Ok(ProviderVerdict::Approved) => {
                if !finish(AttemptResult::Approved).await? {
                    return Err(Error::VerificationNotFound);
                }
                tracing::info!(phone = %phone.masked(), %verification_id, "phone number verified (Twilio Verify)");
                Ok(Verified {
                    verification_id,
                    verified_at: self.now(),
                })
            }
            Ok(ProviderVerdict::WrongCode) => {
                tracing::info!(phone = %phone.masked(), attempts_remaining, "wrong code");
                Err(Error::InvalidCode { attempts_remaining })
            }
            Ok(ProviderVerdict::NotFound) => {
                finish(AttemptResult::Refund).await?;
                Err(Error::VerificationNotFound)
            }
            Ok(ProviderVerdict::MaxAttemptsReached) => {
                finish(AttemptResult::Exhausted).await?;
                Err(Error::MaxAttemptsReached)
            }
            Err(e) => {
                finish(AttemptResult::Refund).await?;
                Err(e.into())
            }
        }
    }
}

/// The key a client IP is counted under: the address itself for IPv4, the /64 network for IPv6
/// (one subscriber usually holds a whole /64 and could rotate through it).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
