//! Configuration from the environment (and a `.env` file, loaded by `main`).
//!
//! Every variable is parsed and checked here, once, at start-up: a bad value stops the process with a
//! [`ConfigError`] naming the variable, instead of surfacing as a strange failure on the first request.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{PhoneNumber, VerificationCode};

/// The code-hash key used when `CODE_HASH_SECRET` is unset outside production. It is public (it is in
/// this file), so start-up logs a warning whenever it is in use.
pub const DEVELOPMENT_CODE_HASH_SECRET: &str = "phone-verify-development-only-code-hash-secret";

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProviderKind {
    Console,
    TwilioVerify,
    TwilioMessaging,
}

impl SmsProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::TwilioVerify => "twilio-verify",
            Self::TwilioMessaging => "twilio-messaging",
        }
    }
}

#[derive(Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub verify_service_sid: Option<String>,
    pub phone_number: Option<String>,
    pub api_base_url: String,
    pub verify_base_url: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra tries after a connection failure or a 429/503 answer (never after a request that may
    /// have sent an SMS).
    pub max_retries: u32,
    /// First backoff delay; each retry doubles it, with full jitter.
    pub retry_base: Duration,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("verify_service_sid", &self.verify_service_sid)
            .field("phone_number", &self.phone_number)
            .field("api_base_url", &self.api_base_url)
            .field("verify_base_url", &self.verify_base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

/// Everything the service reads from its environment. `Debug` never prints a secret (`SecretString`
/// redacts itself).
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub bind_addr: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    pub sms_provider: SmsProviderKind,
    pub twilio: Option<TwilioConfig>,
    pub sms_template: String,
    pub code_length: usize,
    pub code_ttl: Duration,
    pub max_verify_attempts: u32,
    pub resend_cooldown: Duration,
    pub max_sends_per_hour: u32,
    pub code_hash_secret: SecretString,
    /// True when `code_hash_secret` is the public development default.
    pub code_hash_secret_is_default: bool,
    pub data_retention: Duration,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// Browser origins allowed to call the API (CORS); empty allows none.
    pub cors_allowed_origins: Vec<String>,
    /// Numbers with fixed codes: nothing is sent to them.
    pub test_phone_numbers: Vec<(PhoneNumber, String)>,
    /// Enables `POST /api/sms/send`.
    pub internal_api_token: Option<SecretString>,
    /// Signs the token in verify answers.
    pub verification_token_secret: Option<SecretString>,
    pub verification_token_ttl: Duration,
    pub trust_proxy_headers: bool,
    /// Per-IP request rate on `/api/` (0: off).
    pub rate_limit_per_ip_per_minute: u32,
    /// 0: off.
    pub max_sends_per_ip_per_hour: u32,
    /// 0: off.
    pub max_sends_per_country_per_hour: u32,
    /// ISO 3166 alpha-2 codes; `None` allows every country.
    pub allowed_countries: Option<Vec<String>>,
}

/// Reads variables from somewhere: the process environment in production, a map in tests (so tests
/// never call the racy `std::env::set_var`).
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Environment)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let vars = Vars(src);

        let app_env = match vars.string("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "APP_ENV",
                    format!("expected `development` or `production`, got `{other}`"),
                ));
            }
        };
        let production = app_env == AppEnv::Production;

        let bind_addr = vars.parse(
            "BIND_ADDR",
            "0.0.0.0:8080",
            "a socket address such as 0.0.0.0:8080",
        )?;

        let database_url = vars
            .string("DATABASE_URL")
            .unwrap_or_else(|| "sqlite://data/phone-verify.db".to_string());
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        let database_max_connections = vars.ranged("DATABASE_MAX_CONNECTIONS", 10, 1, 1000)? as u32;
        let database_acquire_timeout =
            Duration::from_secs(vars.ranged("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 3, 1, 300)?);

        let twilio = twilio_config(&vars)?;
        let sms_provider = match vars.string("SMS_PROVIDER").as_deref() {
            None | Some("auto") => match &twilio {
                Some(t) if t.verify_service_sid.is_some() => SmsProviderKind::TwilioVerify,
                Some(t) if t.phone_number.is_some() => SmsProviderKind::TwilioMessaging,
                _ => SmsProviderKind::Console,
            },
            Some("console") => SmsProviderKind::Console,
            Some("twilio-verify") => SmsProviderKind::TwilioVerify,
            Some("twilio-messaging") => SmsProviderKind::TwilioMessaging,
            Some(other) => {
                return Err(ConfigError::new(
                    "SMS_PROVIDER",
                    format!(
                        "expected auto, console, twilio-verify or twilio-messaging, got `{other}`"
                    ),
                ));
            }
        };
        match sms_provider {
            SmsProviderKind::Console => {}
            SmsProviderKind::TwilioVerify | SmsProviderKind::TwilioMessaging => {
                let Some(t) = &twilio else {
                    let missing = if vars.string("TWILIO_ACCOUNT_SID").is_none() {
                        "TWILIO_ACCOUNT_SID"
                    } else {
                        "TWILIO_AUTH_TOKEN"
                    };
                    return Err(ConfigError::new(
                        missing,
                        format!("required by SMS_PROVIDER={}", sms_provider.as_str()),
                    ));
                };
                if sms_provider == SmsProviderKind::TwilioVerify && t.verify_service_sid.is_none() {
                    return Err(ConfigError::new(
                        "TWILIO_VERIFY_SERVICE_SID",
                        "required by SMS_PROVIDER=twilio-verify",
                    ));
                }
                if sms_provider == SmsProviderKind::TwilioMessaging && t.phone_number.is_none() {
                    return Err(ConfigError::new(
                        "TWILIO_PHONE_NUMBER",
                        "required by SMS_PROVIDER=twilio-messaging",
                    ));
                }
            }
        }
        if production && sms_provider == SmsProviderKind::Console {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                "the console provider only logs codes; APP_ENV=production needs a Twilio provider",
            ));
        }

        let sms_template = vars
            .string("SMS_TEMPLATE")
            .unwrap_or_else(|| "Your verification code is {code}".to_string());
        if !sms_template.contains("{code}") {
            return Err(ConfigError::new("SMS_TEMPLATE", "must contain `{code}`"));
        }

        let code_length = vars.ranged("CODE_LENGTH", 6, 4, 10)? as usize;
        let code_ttl = Duration::from_secs(vars.ranged("CODE_TTL_SECONDS", 600, 1, 86_400)?);
        let max_verify_attempts = vars.ranged("MAX_VERIFY_ATTEMPTS", 5, 1, 100)? as u32;
        let resend_cooldown =
            Duration::from_secs(vars.ranged("RESEND_COOLDOWN_SECONDS", 30, 0, 3_600)?);
        let max_sends_per_hour = vars.ranged("MAX_SENDS_PER_HOUR", 5, 1, 1_000)? as u32;

        let (code_hash_secret, code_hash_secret_is_default) = match vars.string("CODE_HASH_SECRET")
        {
            Some(s) if production && s.len() < 32 => {
                return Err(ConfigError::new(
                    "CODE_HASH_SECRET",
                    "must be at least 32 bytes when APP_ENV=production",
                ));
            }
            Some(s) => (SecretString::from(s), false),
            None if production => {
                return Err(ConfigError::new(
                    "CODE_HASH_SECRET",
                    "required when APP_ENV=production (at least 32 random bytes)",
                ));
            }
            None => (SecretString::from(DEVELOPMENT_CODE_HASH_SECRET), true),
        };

        let data_retention =
            Duration::from_secs(vars.ranged("DATA_RETENTION_HOURS", 24, 1, 24 * 365)? * 3_600);

        let log_format = match vars.string("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected `pretty` or `json`, got `{other}`"),
                ));
            }
        };

        let cors_allowed_origins = match vars.string("CORS_ALLOWED_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(parse_origin)
                .collect::<Result<_, _>>()?,
        };

        let test_phone_numbers = match vars.string("TEST_PHONE_NUMBERS") {
            None => Vec::new(),
            Some(list) => parse_test_numbers(&list, code_length)?,
        };
        if production
            && !test_phone_numbers.is_empty()
            && !vars.boolean("ALLOW_TEST_NUMBERS_IN_PRODUCTION")?
        {
            return Err(ConfigError::new(
                "TEST_PHONE_NUMBERS",
                "refused when APP_ENV=production (set ALLOW_TEST_NUMBERS_IN_PRODUCTION=true if you mean it)",
            ));
        }

        let internal_api_token = vars.string("INTERNAL_API_TOKEN");
        if let Some(token) = &internal_api_token
            && token.len() < 16
        {
            return Err(ConfigError::new(
                "INTERNAL_API_TOKEN",
                "must be at least 16 characters",
            ));
        }
        if internal_api_token.is_some()
            && sms_provider == SmsProviderKind::TwilioVerify
            && twilio.as_ref().is_some_and(|t| t.phone_number.is_none())
        {
            return Err(ConfigError::new(
                "INTERNAL_API_TOKEN",
                "custom messages go through the Messaging API: set TWILIO_PHONE_NUMBER too",
            ));
        }

        let verification_token_secret = vars.string("VERIFICATION_TOKEN_SECRET");
        if let Some(secret) = &verification_token_secret
            && secret.len() < 32
        {
            return Err(ConfigError::new(
                "VERIFICATION_TOKEN_SECRET",
                "must be at least 32 bytes (HS256 key)",
            ));
        }
        let verification_token_ttl = Duration::from_secs(vars.ranged(
            "VERIFICATION_TOKEN_TTL_SECONDS",
            900,
            1,
            86_400 * 30,
        )?);

        let trust_proxy_headers = vars.boolean("TRUST_PROXY_HEADERS")?;
        let rate_limit_per_ip_per_minute =
            vars.ranged("RATE_LIMIT_PER_IP_PER_MINUTE", 20, 0, 1_000_000)? as u32;
        let max_sends_per_ip_per_hour =
            vars.ranged("MAX_SENDS_PER_IP_PER_HOUR", 20, 0, 1_000_000)? as u32;
        let max_sends_per_country_per_hour =
            vars.ranged("MAX_SENDS_PER_COUNTRY_PER_HOUR", 1_000, 0, 100_000_000)? as u32;
        let allowed_countries = match vars.string("ALLOWED_COUNTRIES") {
            None => None,
            Some(list) => Some(parse_countries(&list)?),
        };

        let shutdown_timeout =
            Duration::from_secs(vars.ranged("SHUTDOWN_TIMEOUT_SECONDS", 20, 1, 3_600)?);

        Ok(Config {
            shutdown_timeout,
            test_phone_numbers,
            internal_api_token: internal_api_token.map(SecretString::from),
            verification_token_secret: verification_token_secret.map(SecretString::from),
            verification_token_ttl,
            trust_proxy_headers,
            rate_limit_per_ip_per_minute,
            max_sends_per_ip_per_hour,
            max_sends_per_country_per_hour,
            allowed_countries,
            cors_allowed_origins,
            app_env,
            bind_addr,
            database_url,
            database_max_connections,
            database_acquire_timeout,
            sms_provider,
            twilio,
            sms_template,
            code_length,
            code_ttl,
            max_verify_attempts,
            resend_cooldown,
            max_sends_per_hour,
            code_hash_secret,
            code_hash_secret_is_default,
            data_retention,
            log_format,
        })
    }

    /// The key codes are hashed under.
    pub fn code_hash_key(&self) -> &[u8] {
        self.code_hash_secret.expose_secret().as_bytes()
    }
}

fn twilio_config(vars: &Vars<'_>) -> Result<Option<TwilioConfig>, ConfigError> {
    let account_sid = vars.string("TWILIO_ACCOUNT_SID");
    let auth_token = vars.string("TWILIO_AUTH_TOKEN");
    let (account_sid, auth_token) = match (account_sid, auth_token) {
        (Some(sid), Some(token)) => (sid, token),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::new(
                "TWILIO_AUTH_TOKEN",
                "must be set together with TWILIO_ACCOUNT_SID",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "TWILIO_ACCOUNT_SID",
                "must be set together with TWILIO_AUTH_TOKEN",
            ));
        }
    };
    if !account_sid.starts_with("AC") {
        return Err(ConfigError::new(
            "TWILIO_ACCOUNT_SID",
            "an Account SID starts with `AC`",
        ));
    }
    let verify_service_sid = vars.string("TWILIO_VERIFY_SERVICE_SID");
    if let Some(sid) = &verify_service_sid
        && !sid.starts_with("VA")
    {
        return Err(ConfigError::new(
            "TWILIO_VERIFY_SERVICE_SID",
            "a Verify Service SID starts with `VA`",
        ));
    }
    let phone_number = vars.string("TWILIO_PHONE_NUMBER");
    if let Some(number) = &phone_number
        && !is_sender_id(number)
    {
        return Err(ConfigError::new(
            "TWILIO_PHONE_NUMBER",
            "must be an E.164 number such as +15017122661 (or a Messaging Service SID, MG…)",
        ));
    }
    Ok(Some(TwilioConfig {
        account_sid,
        auth_token: SecretString::from(auth_token),
        verify_service_sid,
        phone_number,
        api_base_url: vars.url("TWILIO_API_BASE_URL", "https://api.twilio.com")?,
        verify_base_url: vars.url("TWILIO_VERIFY_BASE_URL", "https://verify.twilio.com")?,
        connect_timeout: Duration::from_millis(vars.ranged(
            "TWILIO_CONNECT_TIMEOUT_MS",
            3_000,
            1,
            60_000,
        )?),
        request_timeout: Duration::from_millis(vars.ranged(
            "TWILIO_TIMEOUT_MS",
            10_000,
            1,
            120_000,
        )?),
        max_retries: vars.ranged("TWILIO_MAX_RETRIES", 2, 0, 10)? as u32,
        retry_base: Duration::from_millis(vars.ranged("TWILIO_RETRY_BASE_MS", 250, 1, 60_000)?),
    }))
}

/// Our own sender, checked for form only: Twilio knows which numbers the account owns, and leaving
/// libphonenumber out of configuration parsing lets its ~150 ms metadata load overlap the database
/// connection at start-up (`Application::build`).
fn is_sender_id(value: &str) -> bool {
    let is_e164 = value.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    });
    let is_messaging_service = value
        .strip_prefix("MG")
        .is_some_and(|sid| sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()));
    is_e164 || is_messaging_service
}

/// `+15005550006=123456,+15005550007=654321`
fn parse_test_numbers(
    list: &str,
    code_length: usize,
) -> Result<Vec<(PhoneNumber, String)>, ConfigError> {
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
            Ok((number, code.to_string()))
        })
        .collect()
}

fn parse_countries(list: &str) -> Result<Vec<String>, ConfigError> {
    let countries: Vec<String> = list
        .split(',')
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .collect();
    for c in &countries {
        if c.parse::<phonenumber::country::Id>().is_err() {
            return Err(ConfigError::new(
                "ALLOWED_COUNTRIES",
                format!("`{c}` is not an ISO 3166 alpha-2 country code"),
            ));
        }
    }
    if countries.is_empty() {
        return Err(ConfigError::new(
            "ALLOWED_COUNTRIES",
            "lists no country; leave it unset to allow all",
        ));
    }
    Ok(countries)
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError::new(
            "CORS_ALLOWED_ORIGINS",
            format!(
                "`{raw}` is not an origin such as https://app.example.com or http://localhost:3000"
            ),
        )
    };
    let url = reqwest::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || raw.ends_with('/')
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

struct Vars<'a>(&'a dyn Source);

impl Vars<'_> {
    /// A variable's value; set-but-empty counts as unset, as `.env` files often hold `NAME=`.
    fn string(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let raw = self.string(name).unwrap_or_else(|| default.to_string());
        raw.parse()
            .map_err(|_| ConfigError::new(name, format!("expected {expected}, got `{raw}`")))
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.string(name).as_deref() {
            None => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("expected true or false, got `{other}`"),
            )),
        }
    }

    fn ranged(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.string(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!("expected a whole number from {min} to {max}, got `{raw}`"),
            )),
        }
    }

    fn url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let raw = self.string(name).unwrap_or_else(|| default.to_string());
        match reqwest::Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                Ok(raw.trim_end_matches('/').to_string())
            }
            _ => Err(ConfigError::new(
                name,
                format!("expected an http(s) URL, got `{raw}`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_source(&map)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.database_url, "sqlite://data/phone-verify.db");
        assert_eq!(c.sms_provider, SmsProviderKind::Console);
        assert_eq!(c.code_length, 6);
        assert_eq!(c.code_ttl, Duration::from_secs(600));
        assert_eq!(c.max_verify_attempts, 5);
        assert_eq!(c.resend_cooldown, Duration::from_secs(30));
        assert_eq!(c.max_sends_per_hour, 5);
        assert!(c.code_hash_secret_is_default);
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
        assert_eq!(c.sms_provider, SmsProviderKind::TwilioMessaging);
    }

    #[test]
    fn auto_picks_verify_then_messaging_then_console() {
        let base = [("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")];
        let mut verify = base.to_vec();
        verify.push(("TWILIO_VERIFY_SERVICE_SID", "VA1"));
        verify.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&verify).unwrap().sms_provider,
            SmsProviderKind::TwilioVerify
        );
        let mut messaging = base.to_vec();
        messaging.push(("TWILIO_PHONE_NUMBER", "+15017122661"));
        assert_eq!(
            config(&messaging).unwrap().sms_provider,
            SmsProviderKind::TwilioMessaging
        );
        assert_eq!(
            config(&base).unwrap().sms_provider,
            SmsProviderKind::Console
        );
    }

    #[test]
    fn an_explicit_provider_without_credentials_names_the_missing_variable() {
        let err = config(&[("SMS_PROVIDER", "twilio-messaging")]).unwrap_err();
        assert_eq!(err.variable, "TWILIO_ACCOUNT_SID");
        let err = config(&[
            ("SMS_PROVIDER", "twilio-verify"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "t"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "TWILIO_VERIFY_SERVICE_SID");
    }

    #[test]
    fn the_sender_must_be_an_e164_number_or_a_messaging_service_sid() {
        let with_sender = |sender: &str| {
            config(&[
                ("TWILIO_ACCOUNT_SID", "AC1"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_PHONE_NUMBER", sender),
            ])
        };
        for good in [
            "+15017122661",
            "+6834001",
            "MG0123456789abcdef0123456789ABCDEF",
        ] {
            let config = with_sender(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(config.sms_provider, SmsProviderKind::TwilioMessaging);
        }
        for bad in [
            "15017122661",
            "+1 501 712 2661",
            "+05017122661",
            "+1234567890123456",
            "MG123",
            "MGzz23456789abcdef0123456789abcdef",
        ] {
            let err = with_sender(bad).unwrap_err();
            assert_eq!(err.variable, "TWILIO_PHONE_NUMBER", "{bad}");
        }
    }

    #[test]
    fn cors_origins_are_checked() {
        let c = config(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            c.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert!(config(&[]).unwrap().cors_allowed_origins.is_empty());
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://x.com/path",
            "ftp://x.com",
        ] {
            let err = config(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
            assert_eq!(err.variable, "CORS_ALLOWED_ORIGINS", "{bad}");
        }
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
