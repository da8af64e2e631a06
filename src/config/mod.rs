//! Configuration from the environment (and a `.env` file, loaded by `main`): the sections that
//! each subsystem owns, composed, plus the rules that span them (production mode).
//!
//! Every variable is read and checked once, at start-up: a bad value stops the process with one
//! [`ConfigError`] line naming the variable.

mod vars;

pub use vars::{ConfigError, Environment, Source, Vars};

use crate::events::EventsSettings;
use crate::fraud::FraudSettings;
use crate::http::HttpSettings;
use crate::sms::{SmsProviderKind, SmsSettings};
use crate::storage::DatabaseSettings;
use crate::telemetry::LogFormat;
use crate::token::TokenSettings;
use crate::verification::VerificationSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// Everything the service reads from its environment, by subsystem. `Debug` never prints a secret
/// (`SecretString` redacts itself).
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub log_format: LogFormat,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub sms: SmsSettings,
    pub verification: VerificationSettings,
    pub fraud: FraudSettings,
    pub events: EventsSettings,
    pub token: TokenSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Environment)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let vars = Vars(src);
        let app_env = vars
            .choice(
                "APP_ENV",
                &[
                    ("development", AppEnv::Development),
                    ("production", AppEnv::Production),
                ],
            )?
            .unwrap_or(AppEnv::Development);
        let config = Config {
            app_env,
            http: HttpSettings::from_vars(&vars)?,
            database: DatabaseSettings::from_vars(&vars)?,
            sms: SmsSettings::from_vars(&vars)?,
            verification: VerificationSettings::from_vars(&vars)?,
            fraud: FraudSettings::from_vars(&vars, app_env)?,
            events: EventsSettings::from_vars(&vars)?,
            token: TokenSettings::from_vars(&vars)?,
            log_format: LogFormat::from_vars(&vars)?,
        };
        config.check_across_sections()?;
        Ok(config)
    }

    /// Rules that no one section can check alone.
    fn check_across_sections(&self) -> Result<(), ConfigError> {
        if let Some(channel) = self
            .verification
            .allowed_channels
            .iter()
            .find(|c| !self.sms.serves(**c))
        {
            let how = match channel {
                crate::domain::Channel::Whatsapp => {
                    "set TWILIO_WHATSAPP_FROM and TWILIO_WHATSAPP_CONTENT_SID"
                }
                crate::domain::Channel::Call => "set TWILIO_VOICE_FROM",
                crate::domain::Channel::Sms => "add an SMS provider",
            };
            return Err(ConfigError::new(
                "ALLOWED_CHANNELS",
                format!(
                    "no configured SMS_PROVIDER can send `{channel}`: {how}, or use twilio-verify or webhook"
                ),
            ));
        }
        if self.http.internal_api_token.is_some() && !self.sms.sends_messages() {
            return Err(ConfigError::new(
                "INTERNAL_API_TOKEN",
                "custom messages go through the Messaging API: set TWILIO_PHONE_NUMBER too",
            ));
        }
        if self.app_env != AppEnv::Production {
            return Ok(());
        }
        if self.sms.chain.contains(&SmsProviderKind::Console) {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                "the console provider only logs codes; APP_ENV=production needs a Twilio or webhook provider",
            ));
        }
        let verification = &self.verification;
        match &verification.code_hash_secret {
            None => {
                return Err(ConfigError::new(
                    "CODE_HASH_SECRET",
                    "required when APP_ENV=production (at least 32 random bytes)",
                ));
            }
            Some(_) if verification.code_hash_key().len() < 32 => {
                return Err(ConfigError::new(
                    "CODE_HASH_SECRET",
                    "must be at least 32 bytes when APP_ENV=production",
                ));
            }
            Some(_) => {}
        }
        if !verification.test_numbers.is_empty() && !verification.allow_test_numbers_in_production {
            return Err(ConfigError::new(
                "TEST_PHONE_NUMBERS",
                "refused when APP_ENV=production (set ALLOW_TEST_NUMBERS_IN_PRODUCTION=true if you mean it)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    /// The configuration that these variables, and nothing else, make.
    pub(crate) fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_source(&map)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.http.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.database.url, "sqlite://data/phone-verify.db");
        assert_eq!(c.sms.chain, [SmsProviderKind::Console]);
        let v = &c.verification;
        assert_eq!(v.code_length, 6);
        assert_eq!(v.code_ttl, Duration::from_secs(600));
        assert_eq!(v.max_verify_attempts, 5);
        assert_eq!(v.resend_cooldown, Duration::from_secs(30));
        assert_eq!(v.max_sends_per_hour, 5);
        assert!(v.code_hash_secret_is_default());
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("CODE_LENGTH", "3"),
            ("CODE_LENGTH", "11"),
            ("CODE_LENGTH", "six"),
            ("BIND_ADDR", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("LOG_FORMAT", "xml"),
            ("APP_ENV", "prod"),
            ("SMS_PROVIDER", "carrier-pigeon"),
            ("SMS_TEMPLATE", "Your code"),
            ("MAX_VERIFY_ATTEMPTS", "0"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}: {err}");
        }
    }

    #[test]
    fn production_refuses_the_console_provider_and_a_missing_secret() {
        let err = config(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable, "SMS_PROVIDER");

        let twilio = [
            ("APP_ENV", "production"),
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_PHONE_NUMBER", "+15017122661"),
        ];
        let err = config(&twilio).unwrap_err();
        assert_eq!(err.variable, "CODE_HASH_SECRET");

        let mut short = twilio.to_vec();
        short.push(("CODE_HASH_SECRET", "short"));
        assert_eq!(config(&short).unwrap_err().variable, "CODE_HASH_SECRET");

        let mut ok = twilio.to_vec();
        ok.push(("CODE_HASH_SECRET", "0123456789abcdef0123456789abcdef"));
        let c = config(&ok).unwrap();
        assert_eq!(c.sms.chain, [SmsProviderKind::TwilioMessaging]);
    }

    #[test]
    fn an_allowed_channel_that_no_provider_serves_stops_the_start() {
        let messaging = [
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_PHONE_NUMBER", "+15017122661"),
        ];
        for channel in ["whatsapp", "call", "sms,call"] {
            let mut vars = messaging.to_vec();
            vars.push(("ALLOWED_CHANNELS", channel));
            let err = config(&vars).unwrap_err();
            assert_eq!(err.variable, "ALLOWED_CHANNELS", "{channel}: {err}");
        }
        let mut served = messaging.to_vec();
        served.extend([
            ("ALLOWED_CHANNELS", "sms,whatsapp,call"),
            ("TWILIO_WHATSAPP_FROM", "+15017122661"),
            (
                "TWILIO_WHATSAPP_CONTENT_SID",
                "HX0123456789abcdef0123456789abcdef",
            ),
            ("TWILIO_VOICE_FROM", "+15017122662"),
        ]);
        config(&served).unwrap();
        // Console, webhook and Verify serve every channel.
        config(&[("ALLOWED_CHANNELS", "sms,whatsapp,call")]).unwrap();
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = config(&[
            ("CODE_HASH_SECRET", "super-secret-hash-key"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "super-secret-auth-token"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
    }
}
