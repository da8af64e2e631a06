//! The verification settings: codes (length, lifetime, attempts, hash key), the send limits per
//! number, client IP and country, allowed countries and test numbers.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, Vars};
use crate::domain::{PhoneNumber, VerificationCode};

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
        })
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
