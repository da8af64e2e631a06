//! `EVENTS_*`: where events go, the secret they are signed with, and how long one is retried.

use std::time::Duration;

use crate::config::{ConfigError, Vars};
use crate::signature::standard_webhooks::WebhookSecret;

#[derive(Debug, Clone)]
pub struct EventsSettings {
    /// `None` when `EVENTS_WEBHOOK_URL` is unset: no events are written or sent.
    pub webhook: Option<EventsWebhook>,
    /// How long an event is retried before it is dropped; also how long an event that nobody
    /// tries (events turned off) stays in the outbox.
    pub max_age: Duration,
}

/// The receiver of the events.
#[derive(Debug, Clone)]
pub struct EventsWebhook {
    pub url: String,
    pub secret: WebhookSecret,
}

impl EventsSettings {
    /// The secret is checked whenever it is set and required with the URL, so a typo stops the
    /// start instead of every delivery.
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let max_age = vars.ranged("EVENTS_MAX_AGE_HOURS", 24, 1, 720)?;
        let secret = match vars.string("EVENTS_WEBHOOK_SECRET") {
            Some(raw) => Some(
                WebhookSecret::parse(&raw)
                    .map_err(|e| ConfigError::new("EVENTS_WEBHOOK_SECRET", e.to_string()))?,
            ),
            None => None,
        };
        let webhook = match vars.string("EVENTS_WEBHOOK_URL") {
            None => None,
            Some(_) => Some(EventsWebhook {
                url: vars.url("EVENTS_WEBHOOK_URL", "")?,
                secret: secret.ok_or_else(|| {
                    ConfigError::new(
                        "EVENTS_WEBHOOK_SECRET",
                        "required with EVENTS_WEBHOOK_URL: whsec_ followed by base64 of 24 to 64 random bytes",
                    )
                })?,
            }),
        };
        Ok(Self {
            webhook,
            max_age: Duration::from_secs(max_age * 3_600),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn settings(pairs: &[(&str, &str)]) -> Result<EventsSettings, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        EventsSettings::from_vars(&Vars(&map))
    }

    #[test]
    fn off_by_default_with_a_day_of_retries() {
        let s = settings(&[]).unwrap();
        assert!(s.webhook.is_none());
        assert_eq!(s.max_age, Duration::from_secs(24 * 3_600));
    }

    #[test]
    fn a_url_and_a_secret_turn_events_on() {
        let s = settings(&[
            ("EVENTS_WEBHOOK_URL", "https://backend.example.com/hooks/"),
            ("EVENTS_WEBHOOK_SECRET", SECRET),
            ("EVENTS_MAX_AGE_HOURS", "720"),
        ])
        .unwrap();
        assert_eq!(s.webhook.unwrap().url, "https://backend.example.com/hooks");
        assert_eq!(s.max_age, Duration::from_secs(720 * 3_600));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let url = ("EVENTS_WEBHOOK_URL", "https://backend.example.com/hooks");
        for (pairs, variable) in [
            (vec![url], "EVENTS_WEBHOOK_SECRET"),
            (
                vec![url, ("EVENTS_WEBHOOK_SECRET", "whsec_short")],
                "EVENTS_WEBHOOK_SECRET",
            ),
            // A bad secret stops the start even before the URL is set.
            (
                vec![("EVENTS_WEBHOOK_SECRET", "not-a-secret")],
                "EVENTS_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("EVENTS_WEBHOOK_URL", "ftp://x"),
                    ("EVENTS_WEBHOOK_SECRET", SECRET),
                ],
                "EVENTS_WEBHOOK_URL",
            ),
            (vec![("EVENTS_MAX_AGE_HOURS", "0")], "EVENTS_MAX_AGE_HOURS"),
            (
                vec![("EVENTS_MAX_AGE_HOURS", "721")],
                "EVENTS_MAX_AGE_HOURS",
            ),
        ] {
            let err = settings(&pairs).unwrap_err();
            assert_eq!(err.variable, variable, "{pairs:?}: {err}");
        }
    }
}
