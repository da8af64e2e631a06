//! The HTTP settings: where to listen, who may call (CORS, the internal token), how the client IP
//! is found and how fast it may call, how long a shutdown drains, and the public URL providers call
//! back on.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{ConfigError, Vars};

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind_addr: SocketAddr,
    /// Browser origins allowed to call the API (CORS); empty allows none.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_proxy_headers: bool,
    /// Per-IP request rate on `/api/` (0: off).
    pub rate_limit_per_ip_per_minute: u32,
    /// Enables the internal endpoints (`POST /api/sms/send`, the lookups and stats).
    pub internal_api_token: Option<SecretString>,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// The URL Twilio reaches this service at (`PUBLIC_BASE_URL`, no trailing slash); enables
    /// status callbacks.
    pub public_base_url: Option<String>,
}

impl HttpSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let internal_api_token = vars.string("INTERNAL_API_TOKEN");
        if internal_api_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "INTERNAL_API_TOKEN",
                "must be at least 16 characters",
            ));
        }
        Ok(Self {
            bind_addr: vars.parse(
                "BIND_ADDR",
                "0.0.0.0:8080",
                "a socket address such as 0.0.0.0:8080",
            )?,
            cors_allowed_origins: vars
                .list("CORS_ALLOWED_ORIGINS")
                .iter()
                .map(|o| parse_origin(o))
                .collect::<Result<_, _>>()?,
            trust_proxy_headers: vars.boolean("TRUST_PROXY_HEADERS")?,
            rate_limit_per_ip_per_minute: vars.count(
                "RATE_LIMIT_PER_IP_PER_MINUTE",
                20,
                0,
                1_000_000,
            )?,
            internal_api_token: internal_api_token.map(SecretString::from),
            shutdown_timeout: vars.seconds("SHUTDOWN_TIMEOUT_SECONDS", 20, 1, 3_600)?,
            public_base_url: public_base_url(vars)?,
        })
    }

    /// Where Twilio is asked to report delivery statuses; `None` without `PUBLIC_BASE_URL`.
    pub fn twilio_status_callback(&self) -> Option<String> {
        self.public_base_url
            .as_ref()
            .map(|base| format!("{base}{}", super::webhooks::TWILIO_STATUS_PATH))
    }
}

/// An http(s) URL that a path can be appended to: a path prefix is fine (a proxy may mount the
/// service under one), a query or fragment would end up in the middle of the callback URL.
fn public_base_url(vars: &Vars<'_>) -> Result<Option<String>, ConfigError> {
    if vars.string("PUBLIC_BASE_URL").is_none() {
        return Ok(None);
    }
    let base = vars.url("PUBLIC_BASE_URL", "")?;
    let url = reqwest::Url::parse(&base)
        .map_err(|e| ConfigError::new("PUBLIC_BASE_URL", e.to_string()))?;
    if url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(ConfigError::new(
            "PUBLIC_BASE_URL",
            format!("expected a URL such as https://verify.example.com, got `{base}`"),
        ));
    }
    Ok(Some(base))
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

#[cfg(test)]
mod tests {
    use crate::config::tests::config;

    #[test]
    fn cors_origins_are_checked() {
        let c = config(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            c.http.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert!(config(&[]).unwrap().http.cors_allowed_origins.is_empty());
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
    fn the_public_base_url_is_an_http_url_without_its_trailing_slash() {
        assert_eq!(config(&[]).unwrap().http.twilio_status_callback(), None);
        let c = config(&[("PUBLIC_BASE_URL", "https://verify.example.com/")]).unwrap();
        assert_eq!(
            c.http.public_base_url.as_deref(),
            Some("https://verify.example.com")
        );
        assert_eq!(
            c.http.twilio_status_callback().as_deref(),
            Some("https://verify.example.com/webhooks/twilio/status")
        );
        for bad in [
            "verify.example.com",
            "ftp://verify.example.com",
            "https://",
            "https://verify.example.com/?x=1",
            "https://user@verify.example.com",
        ] {
            let err = config(&[("PUBLIC_BASE_URL", bad)]).unwrap_err();
            assert_eq!(err.variable, "PUBLIC_BASE_URL", "{bad}");
        }
    }
}
