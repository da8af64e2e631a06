//! The verification settings: codes (length, lifetime, attempts, hash key), the send limits per
//! number, client IP and country, allowed countries and test numbers, the channels codes may go by
//! and the order of automatic fallback between them.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, Vars};
use crate::domain::{Channel, PhoneNumber, VerificationCode};

/// The code-hash key used when `CODE_HASH_SECRET` is unset outside production. It is public (it is
/// in this file), so start-up logs a warning whenever it is in use.
pub const DEVELOPMENT_CODE_HASH_SECRET: &str = "phone-verify-development-only-code-hash-secret";

#[derive(Debug, Clone)]
pub struct VerificationSettings {
    pub code_length: usize,
    pub code_ttl: Duration,
    pub max_verify_attempts: u32,
    pub resend_cooldown: Duration,
    pub max_sends_per_hour: u32,
    /// 0: not counted.
    pub max_sends_per_ip_per_hour: u32,
    /// 0: not counted.
    pub max_sends_per_country_per_hour: u32,
    /// ISO 3166 alpha-2 codes; `None` allows every country.
    pub allowed_countries: Option<Vec<String>>,
    /// E.164 number → fixed code; no SMS goes to these numbers.
    pub test_numbers: HashMap<String, String>,
    pub allow_test_numbers_in_production: bool,
    /// `None`: the public development key (refused in production).
    pub code_hash_secret: Option<SecretString>,
    /// `ALLOWED_CHANNELS`: the channels a request may ask for (never empty).
    pub allowed_channels: Vec<Channel>,
    /// `CHANNEL_FALLBACK`: after an undelivered code by one of these, the next allowed one after it
    /// gets a new code (empty: no automatic fallback).
    pub channel_fallback: Vec<Channel>,
}

impl VerificationSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let code_length = vars.count("CODE_LENGTH", 6, 4, 10)? as usize;
        let allowed_countries = match vars.string("ALLOWED_COUNTRIES") {
            None => None,
            Some(list) => Some(parse_countries(&list)?),
        };
        let test_numbers = match vars.string("TEST_PHONE_NUMBERS") {
            None => HashMap::new(),
            Some(list) => parse_test_numbers(&list, code_length)?,
        };
        Ok(Self {
            code_length,
            code_ttl: vars.seconds("CODE_TTL_SECONDS", 600, 1, 86_400)?,
            max_verify_attempts: vars.count("MAX_VERIFY_ATTEMPTS", 5, 1, 100)?,
            resend_cooldown: vars.seconds("RESEND_COOLDOWN_SECONDS", 30, 0, 3_600)?,
            max_sends_per_hour: vars.count("MAX_SENDS_PER_HOUR", 5, 1, 1_000)?,
            max_sends_per_ip_per_hour: vars.count("MAX_SENDS_PER_IP_PER_HOUR", 20, 0, 1_000_000)?,
            max_sends_per_country_per_hour: vars.count(
                "MAX_SENDS_PER_COUNTRY_PER_HOUR",
                1_000,
                0,
                100_000_000,
            )?,
            allowed_countries,
            test_numbers,
            allow_test_numbers_in_production: vars.boolean("ALLOW_TEST_NUMBERS_IN_PRODUCTION")?,
            code_hash_secret: vars.string("CODE_HASH_SECRET").map(SecretString::from),
            allowed_channels: match channels(vars, "ALLOWED_CHANNELS")? {
                list if list.is_empty() => vec![Channel::Sms],
                list => list,
            },
            channel_fallback: channels(vars, "CHANNEL_FALLBACK")?,
        })
    }

    /// Whether a request may ask for `channel`.
    pub fn allows(&self, channel: Channel) -> bool {
        self.allowed_channels.contains(&channel)
    }

    /// Where a code that `failed` to arrive falls back to: the first allowed channel after it in
    /// `CHANNEL_FALLBACK`, if it is listed there.
    pub fn fallback_after(&self, failed: Channel) -> Option<Channel> {
        let position = self.channel_fallback.iter().position(|c| *c == failed)?;
        self.channel_fallback[position + 1..]
            .iter()
            .copied()
            .find(|c| self.allows(*c))
    }

    /// The key codes are hashed under.
    pub fn code_hash_key(&self) -> &[u8] {
        match &self.code_hash_secret {
            Some(secret) => secret.expose_secret().as_bytes(),
            None => DEVELOPMENT_CODE_HASH_SECRET.as_bytes(),
        }
    }

    /// True when codes are hashed under the public development key.
    pub fn code_hash_secret_is_default(&self) -> bool {
        self.code_hash_secret.is_none()
    }
}

/// A comma-separated list of channels, each once; empty when unset.
fn channels(vars: &Vars<'_>, name: &'static str) -> Result<Vec<Channel>, ConfigError> {
    let mut list = Vec::new();
    for word in vars.list(name) {
        let channel = Channel::parse(&word).ok_or_else(|| {
            ConfigError::new(
                name,
                format!(
                    "expected a comma-separated list of `sms`, `whatsapp`, `call`; got `{word}`"
                ),
            )
        })?;
        if list.contains(&channel) {
            return Err(ConfigError::new(name, format!("`{word}` is listed twice")));
        }
        list.push(channel);
    }
    Ok(list)
}

/// `+15005550006=123456,+15005550007=654321`
fn parse_test_numbers(
    list: &str,
    code_length: usize,
) -> Result<HashMap<String, String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad =
                |why: &str| ConfigError::new("TEST_PHONE_NUMBERS", format!("`{entry}`: {why}"));
            let (number, code) = entry
                .split_once('=')
                .ok_or_else(|| bad("expected +NUMBER=CODE"))?;
            let number = PhoneNumber::parse(number.trim()).map_err(|e| bad(&e.to_string()))?;
            let code = code.trim();
            VerificationCode::parse(code, code_length).map_err(|_| {
                bad(&format!(
                    "the code must be {code_length} digits (CODE_LENGTH)"
                ))
            })?;
            Ok((number.to_string(), code.to_string()))
        })
        .collect()
}

fn parse_countries(list: &str) -> Result<Vec<String>, ConfigError> {
    let countries: Vec<String> = list
        .split(',')
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(bad) = countries
        .iter()
        .find(|c| c.parse::<phonenumber::country::Id>().is_err())
    {
        return Err(ConfigError::new(
            "ALLOWED_COUNTRIES",
            format!("`{bad}` is not an ISO 3166 alpha-2 country code"),
        ));
    }
    if countries.is_empty() {
        return Err(ConfigError::new(
            "ALLOWED_COUNTRIES",
            "lists no country; leave it unset to allow all",
        ));
    }
    Ok(countries)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::config;
    use crate::domain::Channel;

    #[test]
    fn fallback_goes_to_the_next_allowed_channel_in_the_list() {
        let c = config(&[
            ("ALLOWED_CHANNELS", "sms, call"),
            ("CHANNEL_FALLBACK", "sms,whatsapp,call"),
        ])
        .unwrap();
        let v = &c.verification;
        assert!(v.allows(Channel::Call) && !v.allows(Channel::Whatsapp));
        assert_eq!(v.fallback_after(Channel::Sms), Some(Channel::Call));
        assert_eq!(v.fallback_after(Channel::Call), None, "the last one");
        assert_eq!(v.fallback_after(Channel::Whatsapp), Some(Channel::Call));
        let defaults = config(&[]).unwrap().verification;
        assert_eq!(defaults.allowed_channels, [Channel::Sms]);
        assert_eq!(defaults.fallback_after(Channel::Sms), None);
    }

    #[test]
    fn bad_channel_lists_name_their_variable() {
        for (var, value) in [
            ("ALLOWED_CHANNELS", "sms,pigeon"),
            ("ALLOWED_CHANNELS", "sms,sms"),
            ("CHANNEL_FALLBACK", "sms,fax"),
            ("CHANNEL_FALLBACK", "call,sms,call"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{value}: {err}");
        }
    }
}
