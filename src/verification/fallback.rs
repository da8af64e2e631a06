//! Automatic fallback (`CHANNEL_FALLBACK`): when a delivery report moves a code message to
//! `undelivered` or `failed`, a new code goes out once by the next allowed channel.
//!
//! Once per failure, across instances: only the report that moved the message (the forward-only
//! update returns it to exactly one caller) starts a fallback, and the fallback's send statement
//! itself requires the verification to be pending, unexpired, and still on the failed message.

use std::time::Duration;

use uuid::Uuid;

use super::Verifier;
use super::send::Outgoing;
use crate::domain::{Channel, Locale, MessageStatus, PhoneNumber};
use crate::error::Error;
use crate::storage::{NewSend, SendKind, StatusChange};

impl Verifier {
    /// Sends the fallback a status change calls for, if any. The report has been taken either way,
    /// so nothing here fails it: what happened is logged.
    pub async fn fall_back(&self, change: &StatusChange) {
        if !matches!(
            change.status,
            MessageStatus::Undelivered | MessageStatus::Failed
        ) || change.verification_id.is_none()
        {
            return;
        }
        let Some(channel) = self.settings.fallback_after(change.channel) else {
            return;
        };
        match self.send_fallback(change, channel).await {
            Ok(Some(message_id)) => {
                crate::metrics::fallback(change.channel, channel);
                tracing::info!(
                    failed = %change.message_id,
                    %message_id,
                    from = change.channel.as_str(),
                    to = channel.as_str(),
                    "automatic fallback: a new code was sent by the next channel"
                );
            }
            Ok(None) | Err(Error::VerificationNotFound) => tracing::info!(
                failed = %change.message_id,
                "no fallback: the verification was approved, expired or sent again since"
            ),
            Err(e) => tracing::warn!(
                failed = %change.message_id,
                to = channel.as_str(),
                error = %e,
                "automatic fallback not sent"
            ),
        }
    }

    /// Reserves the fallback (no cooldown; the hourly cap, the country cap and the fraud guard
    /// as for any send) and sends its new code. `None`: nothing to fall back from.
    async fn send_fallback(
        &self,
        change: &StatusChange,
        channel: Channel,
    ) -> Result<Option<Uuid>, Error> {
        let Some(senders) = self.senders_for(channel) else {
            return Ok(None);
        };
        // Twilio Verify keeps its own codes and its own fallback.
        if senders.checks_codes() {
            return Ok(None);
        }
        let Some(source) = self.storage.fallback_source(change.message_id).await? else {
            return Ok(None);
        };
        let phone = PhoneNumber::parse(&source.phone_number)
            .map_err(|e| Error::Internal(anyhow::anyhow!("a stored number does not parse: {e}")))?;
        let locale = source.locale.as_deref().and_then(|l| Locale::parse(l).ok());
        let now = self.now();
        let outgoing = self.new_code(senders, None, channel, locale.as_ref());
        let outcome = self
            .storage
            .reserve_send(NewSend {
                phone: &phone,
                kind: SendKind::Fallback {
                    replaces: change.message_id,
                },
                code_hash: outgoing.code.as_ref().map(|c| self.hasher.hash(&phone, c)),
                now,
                expires_at: now + self.settings.code_ttl,
                cooldown: Duration::ZERO,
                max_sends_per_hour: self.settings.max_sends_per_hour,
                new_verification_id: Uuid::new_v4(),
                send_id: Uuid::new_v4(),
                channel,
                provider: Some(senders.name()),
                // No client asked: there is no IP to count.
                ip_cap: None,
                country_cap: self.country_cap(&phone),
                fraud: self.fraud.check(&phone, now),
            })
            .await?;
        let reservation = self.reserved(&phone, outcome)?;
        let sent = self
            .deliver_code(senders, &phone, &reservation, Outgoing::Code(outgoing))
            .await?;
        Ok(Some(sent.message_id))
    }
}
