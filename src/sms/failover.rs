//! Failover: the configured providers in the order a send tries them. The verifier walks the
//! order (it writes a message record per attempt, which providers may not); this says what the
//! order is and, with [`SmsError::fails_over`], when a send moves on.

use std::sync::Arc;

use super::{SmsError, SmsSender};
use crate::domain::Channel;

/// One or more senders, tried in order; the next only after the previous was unavailable. Clones
/// share the senders.
#[derive(Clone)]
pub struct Failover {
    senders: Arc<[Arc<dyn SmsSender>]>,
}

impl Failover {
    /// `None` for an empty list: a send needs somewhere to go.
    pub fn new(senders: Vec<Arc<dyn SmsSender>>) -> Option<Self> {
        (!senders.is_empty()).then(|| Self {
            senders: senders.into(),
        })
    }

    pub fn single(sender: Arc<dyn SmsSender>) -> Self {
        Self {
            senders: Arc::new([sender]),
        }
    }

    /// The providers that serve `channel`, in the same order; `None` when none does.
    pub fn serving(&self, channel: Channel) -> Option<Self> {
        Self::new(
            self.senders
                .iter()
                .filter(|s| s.serves(channel))
                .cloned()
                .collect(),
        )
    }

    /// The first provider: the one a message record is written for before anything is sent, and
    /// the one that checks codes when it makes them (Twilio Verify, which stands alone).
    pub fn primary(&self) -> &Arc<dyn SmsSender> {
        &self.senders[0]
    }

    /// The first provider's name: the provider the first message record of a send names.
    pub fn name(&self) -> &'static str {
        self.primary().name()
    }

    /// Whether the provider makes and checks codes itself; only Twilio Verify does, and it stands
    /// alone.
    pub fn checks_codes(&self) -> bool {
        self.primary().checks_codes()
    }

    /// Every provider, in order.
    pub fn senders(&self) -> &[Arc<dyn SmsSender>] {
        &self.senders
    }

    /// The provider after `index`, if a send that ended with `error` there may go on to it.
    pub fn next_after(&self, index: usize, error: &SmsError) -> Option<&Arc<dyn SmsSender>> {
        if error.fails_over() {
            self.senders.get(index + 1)
        } else {
            None
        }
    }

    /// `twilio-messaging,webhook`, for the start-up log.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.senders.iter().map(|s| s.name()).collect();
        names.join(",")
    }
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Failover").field(&self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sms::ConsoleSender;

    fn chain(n: usize) -> Failover {
        let senders: Vec<Arc<dyn SmsSender>> = (0..n)
            .map(|_| Arc::new(ConsoleSender::new()) as Arc<dyn SmsSender>)
            .collect();
        Failover::new(senders).unwrap()
    }

    fn unavailable() -> SmsError {
        SmsError::Unavailable {
            reason: "down".into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_an_unavailable_provider_hands_the_send_on() {
        let two = chain(2);
        assert!(two.next_after(0, &unavailable()).is_some());
        assert!(two.next_after(1, &unavailable()).is_none(), "no third");
        for refusal in [
            SmsError::InvalidNumber {
                provider_code: Some(21211),
            },
            SmsError::Rejected {
                provider_code: Some(400),
                message: "no".into(),
            },
            SmsError::TooManySends {
                provider_code: Some(60203),
                retry_after: Some(Duration::from_secs(60)),
            },
        ] {
            assert!(two.next_after(0, &refusal).is_none(), "{refusal}");
        }
    }

    #[test]
    fn an_empty_list_is_no_failover() {
        assert!(Failover::new(Vec::new()).is_none());
        assert_eq!(chain(2).names(), "console,console");
    }
}
