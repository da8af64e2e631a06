//! Checking a code: one statement against our own hash, or (Twilio Verify) an attempt taken here,
//! the provider asked, and its verdict recorded.

use tracing::Instrument;

use super::{Verified, Verifier};
use crate::domain::{PhoneNumber, VerificationCode};
use crate::error::Error;
use crate::sms::ProviderVerdict;
use crate::storage::{AttemptOutcome, AttemptResult, CheckOutcome, CodeCheck};

impl Verifier {
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
                fraud_keys: self.fraud.keys(phone),
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
        let verdict = self.sms.primary().check_code(phone, code).await;
        let keys = self.fraud.keys(phone);
        let finish = |result| {
            self.storage
                .finish_attempt(phone, verification_id, result, self.now(), max, &keys)
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
                if attempts_remaining == 0 {
                    // The attempt taken for this code was the last: the verification is locked.
                    finish(AttemptResult::LastWrong).await?;
                }
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
