//! What a reserve answered, as the send's error or its reservation, with the log lines and metrics
//! of the limits it reached: the caps per number, client IP and country, and the fraud guard.

use super::Verifier;
use crate::domain::PhoneNumber;
use crate::error::{Error, SendCap};
use crate::storage::{CapScope, FraudBlock, Reservation, SendOutcome};

impl Verifier {
    /// The reservation, or the error for the limit that refused the send.
    pub(super) fn reserved(
        &self,
        phone: &PhoneNumber,
        outcome: SendOutcome,
    ) -> Result<Reservation, Error> {
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
            SendOutcome::Blocked { scope, block } => {
                if let Some(block) = &block {
                    fraud_block_made(block, true);
                }
                crate::metrics::fraud_refusal(scope);
                tracing::info!(phone = %phone.masked(), scope = scope.as_str(), "send refused: fraud guard block");
                return Err(Error::DestinationBlocked);
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
        // Monitor mode: what enforce mode would have done.
        for block in &reservation.fraud_blocks {
            fraud_block_made(block, false);
        }
        for scope in &reservation.fraud_over {
            tracing::info!(phone = %phone.masked(), scope = scope.as_str(), "fraud guard (monitor): enforce mode would have refused this send");
        }
        Ok(reservation)
    }

    /// A custom SMS has no code to count, but a running block refuses it (in enforce mode).
    pub(super) async fn check_not_blocked(&self, phone: &PhoneNumber) -> Result<(), Error> {
        if self.fraud.check(phone, self.now()).is_none() {
            return Ok(());
        }
        let keys = self.fraud.keys(phone);
        let Some(scope) = self
            .storage
            .fraud_blocked(&keys.prefix, &keys.country, self.now())
            .await?
        else {
            return Ok(());
        };
        if self.fraud.settings().mode == crate::fraud::FraudMode::Monitor {
            tracing::info!(phone = %phone.masked(), scope = scope.as_str(), "fraud guard (monitor): enforce mode would have refused this message");
            return Ok(());
        }
        crate::metrics::fraud_refusal(scope);
        tracing::info!(phone = %phone.masked(), scope = scope.as_str(), "message refused: fraud guard block");
        Err(Error::DestinationBlocked)
    }
}

/// Logs and counts a block, once: exactly one send's statement makes each block.
fn fraud_block_made(block: &FraudBlock, enforced: bool) {
    crate::metrics::fraud_block(block.scope);
    let scope = block.scope.as_str();
    let until = block.until.to_string();
    let (u, v) = (block.unverified, block.verified);
    if enforced {
        tracing::warn!(scope, key = %block.key, unverified = u, verified = v, %until,
            "fraud guard: destination blocked, unverified codes over the limit (possible SMS pumping)");
    } else {
        tracing::warn!(scope, key = %block.key, unverified = u, verified = v, %until,
            "fraud guard (monitor): would have blocked this destination, unverified codes over the limit (possible SMS pumping)");
    }
}
