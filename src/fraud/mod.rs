//! The fraud guard against SMS pumping: which scopes (destination prefix, country) a send counts
//! under, with what limits, and which destinations it leaves alone. The counting itself is part
//! of the send's statement (`storage::fraud`), so it holds across instances.

mod settings;

use time::OffsetDateTime;

pub use settings::{FraudMode, FraudSettings};

use crate::domain::PhoneNumber;
use crate::storage::{FraudCheck, FraudKeys, FraudScope, RING_SLOTS};

#[derive(Debug, Clone)]
pub struct FraudGuard {
    settings: FraudSettings,
}

impl FraudGuard {
    pub fn new(settings: FraudSettings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &FraudSettings {
        &self.settings
    }

    /// The prefix and country `phone` is counted under.
    pub fn keys(&self, phone: &PhoneNumber) -> FraudKeys {
        let e164: &str = phone.as_ref();
        // `+` and then the first FRAUD_PREFIX_DIGITS digits (all ASCII).
        let end = (1 + self.settings.prefix_digits).min(e164.len());
        FraudKeys {
            prefix: e164[..end].to_string(),
            country: phone.region().unwrap_or("XX").to_string(),
        }
    }

    /// On the safe list: never counted, never refused.
    pub fn is_safe(&self, phone: &PhoneNumber) -> bool {
        let e164: &str = phone.as_ref();
        self.settings
            .safe_list
            .iter()
            .any(|entry| e164.starts_with(entry.as_str()))
    }

    /// What a code send to `phone` is counted under and refused by; `None` when the guard is off
    /// or the number is on the safe list.
    pub fn check(&self, phone: &PhoneNumber, now: OffsetDateTime) -> Option<FraudCheck> {
        if self.settings.mode == FraudMode::Off || self.is_safe(phone) {
            return None;
        }
        let keys = self.keys(phone);
        Some(FraudCheck {
            enforce: self.settings.mode == FraudMode::Enforce,
            prefix: keys.prefix,
            country: keys.country,
            slot: self.slot(now),
            min_per_prefix: self.settings.min_unverified_per_prefix,
            min_per_country: self.settings.min_unverified_per_country,
            ratio: self.settings.unverified_ratio,
            block_until: now + self.settings.block,
        })
    }

    /// The ring slot `now` falls in: Unix time over the slot's length (a 60th of the window).
    fn slot(&self, now: OffsetDateTime) -> i64 {
        let slot_ms = (self.settings.window.as_millis() as i64 / RING_SLOTS).max(1);
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        now_ms.div_euclid(slot_ms)
    }
}

/// A block's key as `DELETE /api/fraud/blocks/{key}` takes it: a prefix (`+447400`) or a country
/// code (`GB`, any case).
pub fn parse_block_key(key: &str) -> Option<(FraudScope, String)> {
    if let Some(digits) = key.strip_prefix('+') {
        return ((1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (FraudScope::Prefix, key.to_string()));
    }
    (key.len() == 2 && key.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| (FraudScope::Country, key.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn guard(mode: FraudMode, safe: &[&str]) -> FraudGuard {
        FraudGuard::new(FraudSettings {
            mode,
            prefix_digits: 6,
            window: Duration::from_secs(1440 * 60),
            block: Duration::from_secs(720 * 60),
            min_unverified_per_prefix: 20,
            min_unverified_per_country: 100,
            unverified_ratio: 1.0,
            safe_list: safe.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn a_prefix_is_the_first_digits_of_the_number() {
        let phone = PhoneNumber::parse("+447400123456").unwrap();
        let keys = guard(FraudMode::Enforce, &[]).keys(&phone);
        assert_eq!(keys.prefix, "+447400");
        assert_eq!(keys.country, "GB");
    }

    #[test]
    fn safe_list_and_off_are_not_counted() {
        let phone = PhoneNumber::parse("+447400123456").unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(
            guard(FraudMode::Enforce, &["+4474"])
                .check(&phone, now)
                .is_none()
        );
        assert!(guard(FraudMode::Off, &[]).check(&phone, now).is_none());
        let check = guard(FraudMode::Monitor, &["+4475"])
            .check(&phone, now)
            .unwrap();
        assert!(!check.enforce);
        assert_eq!(check.block_until - now, time::Duration::hours(12));
    }

    #[test]
    fn slots_are_a_sixtieth_of_the_window() {
        let g = guard(FraudMode::Enforce, &[]);
        let t = OffsetDateTime::from_unix_timestamp(24 * 60 * 1000).unwrap();
        assert_eq!(g.slot(t), 1000);
        assert_eq!(g.slot(t + time::Duration::seconds(24 * 60 - 1)), 1000);
        assert_eq!(g.slot(t + time::Duration::seconds(24 * 60)), 1001);
    }

    #[test]
    fn block_keys_are_prefixes_or_countries() {
        assert_eq!(
            parse_block_key("+447400"),
            Some((FraudScope::Prefix, "+447400".into()))
        );
        assert_eq!(
            parse_block_key("gb"),
            Some((FraudScope::Country, "GB".into()))
        );
        assert_eq!(parse_block_key("+44a"), None);
        assert_eq!(parse_block_key("GBR"), None);
        assert_eq!(parse_block_key(""), None);
    }
}
