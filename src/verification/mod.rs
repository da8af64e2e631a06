//! The verification flow: send a code, check it. Handlers parse requests and call this; this calls
//! storage and the SMS provider, in the order that keeps the limits and the "failed send leaves no
//! usable code" rule true.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

mod check;
mod fallback;
mod refusals;
mod send;
mod settings;

pub use send::MessageSent;
pub use settings::{DEVELOPMENT_CODE_HASH_SECRET, VerificationSettings};

use crate::clock::Clock;
use crate::domain::{Channel, CodeHasher, PhoneNumber, VerificationCode};
use crate::error::Error;
use crate::fraud::FraudGuard;
use crate::sms::{Failover, Templates};
use crate::storage::Storage;

#[derive(Debug, Clone)]
pub struct CodeSent {
    pub verification_id: Uuid,
    /// The channel the code went by.
    pub channel: Channel,
    pub expires_at: OffsetDateTime,
    pub expires_in: Duration,
    pub resend_after: Duration,
}

#[derive(Debug, Clone)]
pub struct Verified {
    pub verification_id: Uuid,
    pub verified_at: OffsetDateTime,
}

/// The code providers that serve each channel, in failover order (`None`: no provider does).
#[derive(Clone)]
struct ChannelRoutes([Option<Failover>; 3]);

impl ChannelRoutes {
    fn new(sms: &Failover) -> Self {
        Self(Channel::ALL.map(|c| sms.serving(c)))
    }

    fn get(&self, channel: Channel) -> Option<&Failover> {
        let index = Channel::ALL.iter().position(|c| *c == channel)?;
        self.0[index].as_ref()
    }
}

#[derive(Clone)]
pub struct Verifier {
    storage: Storage,
    /// The code providers, in failover order.
    sms: Failover,
    /// `sms`, by the channels each provider serves.
    routes: ChannelRoutes,
    /// The text of code messages, per channel and locale.
    templates: Arc<Templates>,
    clock: Arc<dyn Clock>,
    hasher: CodeHasher,
    settings: VerificationSettings,
    fraud: FraudGuard,
}

impl Verifier {
    pub fn new(
        storage: Storage,
        sms: Failover,
        templates: Templates,
        clock: Arc<dyn Clock>,
        hasher: CodeHasher,
        settings: VerificationSettings,
        fraud: FraudGuard,
    ) -> Self {
        Self {
            storage,
            routes: ChannelRoutes::new(&sms),
            sms,
            templates: Arc::new(templates),
            clock,
            hasher,
            settings,
            fraud,
        }
    }

    pub fn fraud(&self) -> &FraudGuard {
        &self.fraud
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
    pub(super) fn test_code(&self, phone: &PhoneNumber) -> Option<VerificationCode> {
        let code = self.settings.test_numbers.get(phone.as_ref())?;
        VerificationCode::parse(code, self.settings.code_length).ok()
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
