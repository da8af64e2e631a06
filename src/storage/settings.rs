//! The database settings (`DATABASE_*`, `DATA_RETENTION_HOURS`) and the connection they make.

use std::time::Duration;

use anyhow::Context;

use crate::config::{ConfigError, Vars};

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite:…`.
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a connection before `503 storage_unavailable`.
    pub acquire_timeout: Duration,
    /// Rows untouched this long are purged.
    pub retention: Duration,
}

impl DatabaseSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let url = vars.string_or("DATABASE_URL", "sqlite://data/phone-verify.db");
        if !["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        Ok(Self {
            url,
            max_connections: vars.count("DATABASE_MAX_CONNECTIONS", 10, 1, 1000)?,
            acquire_timeout: vars.seconds("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 3, 1, 300)?,
            retention: vars.seconds("DATA_RETENTION_HOURS", 24, 1, 24 * 365)? * 3_600,
        })
    }

    /// Opens the database (creating an SQLite file and its directory if needed) and migrates it.
    pub async fn connect(&self) -> anyhow::Result<super::Storage> {
        super::connect(&self.url, self.max_connections, self.acquire_timeout)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database at DATABASE_URL ({})",
                    redact_url(&self.url)
                )
            })
    }
}

/// The URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
