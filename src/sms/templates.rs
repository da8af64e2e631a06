//! The text of a code message that this service writes: a template per locale (`SMS_TEMPLATE`,
//! `SMS_TEMPLATE_<TAG>`), its placeholders, and the autofill lines SMS bodies end with
//! (`WEBOTP_DOMAIN`, `ANDROID_APP_HASH`). All of it is checked at start-up.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{ConfigError, Vars};
use crate::domain::{Channel, Locale, VerificationCode};

pub const DEFAULT_TEMPLATE: &str = "Your verification code is {code}";

const TEMPLATE_PREFIX: &str = "SMS_TEMPLATE_";

/// The templates and autofill settings, read once.
#[derive(Debug, Clone)]
pub struct Templates {
    /// `SMS_TEMPLATE`: used when no locale template matches.
    default: String,
    /// `SMS_TEMPLATE_<TAG>` by its suffix (`PT_BR`, `DE`).
    by_tag: HashMap<String, String>,
    /// `WEBOTP_DOMAIN`: SMS bodies end with `@domain #code`.
    webotp_domain: Option<String>,
    /// `ANDROID_APP_HASH`: 11 characters that Android's SMS Retriever looks for.
    android_app_hash: Option<String>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new(DEFAULT_TEMPLATE)
    }
}

impl Templates {
    /// One template for every locale, no autofill lines.
    pub fn new(default: &str) -> Self {
        Self {
            default: default.to_string(),
            by_tag: HashMap::new(),
            webotp_domain: None,
            android_app_hash: None,
        }
    }

    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let default = vars.string_or("SMS_TEMPLATE", DEFAULT_TEMPLATE);
        check_template("SMS_TEMPLATE", &default)?;
        let mut by_tag = HashMap::new();
        for name in vars.names_with_prefix(TEMPLATE_PREFIX) {
            let Some(template) = vars.string(&name) else {
                continue;
            };
            let suffix = &name[TEMPLATE_PREFIX.len()..];
            // The variable's name is only known at run time; the error names the family.
            let tag = suffix.replace('_', "-");
            if Locale::parse(&tag).is_err() {
                return Err(ConfigError::new(
                    "SMS_TEMPLATE_<TAG>",
                    format!("`{name}`: the suffix must be a language tag such as PT_BR or DE"),
                ));
            }
            if !template.contains("{code}") {
                return Err(ConfigError::new(
                    "SMS_TEMPLATE_<TAG>",
                    format!("`{name}` must contain `{{code}}`"),
                ));
            }
            by_tag.insert(suffix.to_ascii_uppercase(), template);
        }
        let webotp_domain = vars.string("WEBOTP_DOMAIN");
        if let Some(domain) = &webotp_domain
            && !is_domain(domain)
        {
            return Err(ConfigError::new(
                "WEBOTP_DOMAIN",
                format!(
                    "expected a host name such as app.example.com (no scheme, port or path), got `{domain}`"
                ),
            ));
        }
        let android_app_hash = vars.string("ANDROID_APP_HASH");
        if let Some(hash) = &android_app_hash
            && !(hash.len() == 11
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
        {
            return Err(ConfigError::new(
                "ANDROID_APP_HASH",
                "expected the 11-character hash of your app's signing key (letters, digits, + and /)",
            ));
        }
        Ok(Self {
            default,
            by_tag,
            webotp_domain,
            android_app_hash,
        })
    }

    /// The Android hash, for providers that append it themselves (Twilio Verify's `AppHash`).
    pub fn android_app_hash(&self) -> Option<&str> {
        self.android_app_hash.as_deref()
    }

    /// The template for `locale`: its exact tag, then its language, then `SMS_TEMPLATE`.
    pub fn template_for(&self, locale: Option<&Locale>) -> &str {
        let Some(locale) = locale else {
            return &self.default;
        };
        self.by_tag
            .get(&locale.env_suffix())
            .or_else(|| self.by_tag.get(&locale.language().to_ascii_uppercase()))
            .unwrap_or(&self.default)
    }

    /// The text of a code message by `channel`: the template with `{code}` and `{minutes}`
    /// filled in. An SMS body ends with the autofill lines (the Android hash, then WebOTP's
    /// `@domain #code`, which must be the last line); a call spells the digits out one by one so
    /// that a voice reads them singly.
    pub fn render(
        &self,
        channel: Channel,
        code: &VerificationCode,
        locale: Option<&Locale>,
        lifetime: Duration,
    ) -> String {
        let minutes = (lifetime.as_secs() / 60).max(1).to_string();
        let digits = match channel {
            Channel::Call => spell_out(code.expose()),
            _ => code.expose().to_string(),
        };
        let mut body = self
            .template_for(locale)
            .replace("{minutes}", &minutes)
            .replace("{code}", &digits);
        if channel == Channel::Sms {
            if let Some(hash) = &self.android_app_hash {
                body.push('\n');
                body.push_str(hash);
            }
            if let Some(domain) = &self.webotp_domain {
                body.push_str(&format!("\n\n@{domain} #{}", code.expose()));
            }
        }
        body
    }
}

/// `123456` → `1, 2, 3, 4, 5, 6`: each digit a word, with a pause between them.
pub fn spell_out(code: &str) -> String {
    let digits: Vec<String> = code.chars().map(String::from).collect();
    digits.join(", ")
}

fn check_template(name: &'static str, template: &str) -> Result<(), ConfigError> {
    if template.contains("{code}") {
        Ok(())
    } else {
        Err(ConfigError::new(name, "must contain `{code}`"))
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner hyphens, with at least one dot.
fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    fn code() -> VerificationCode {
        VerificationCode::parse("042917", 6).unwrap()
    }

    fn locale(tag: &str) -> Locale {
        Locale::parse(tag).unwrap()
    }

    #[test]
    fn a_locale_finds_its_tag_then_its_language_then_the_default() {
        let templates = config(&[
            ("SMS_TEMPLATE", "Code {code}"),
            ("SMS_TEMPLATE_PT_BR", "Seu código: {code}"),
            ("SMS_TEMPLATE_PT", "O seu código: {code}"),
            (
                "SMS_TEMPLATE_DE",
                "Dein Code: {code}, {minutes} Minuten gültig",
            ),
        ])
        .unwrap()
        .sms
        .templates;
        let ttl = Duration::from_secs(600);
        let body = |tag: Option<&str>| {
            templates.render(Channel::Sms, &code(), tag.map(locale).as_ref(), ttl)
        };
        assert_eq!(body(Some("pt-BR")), "Seu código: 042917");
        assert_eq!(body(Some("pt-br")), "Seu código: 042917");
        assert_eq!(body(Some("pt-PT")), "O seu código: 042917");
        assert_eq!(body(Some("de-AT")), "Dein Code: 042917, 10 Minuten gültig");
        assert_eq!(body(Some("fr")), "Code 042917");
        assert_eq!(body(None), "Code 042917");
    }

    #[test]
    fn sms_bodies_end_with_the_autofill_lines_and_calls_spell_the_digits() {
        let templates = config(&[
            ("WEBOTP_DOMAIN", "app.example.com"),
            ("ANDROID_APP_HASH", "FA+9qCX9VSu"),
        ])
        .unwrap()
        .sms
        .templates;
        let ttl = Duration::from_secs(600);
        let sms = templates.render(Channel::Sms, &code(), None, ttl);
        assert_eq!(
            sms,
            "Your verification code is 042917\nFA+9qCX9VSu\n\n@app.example.com #042917"
        );
        assert_eq!(sms.lines().last(), Some("@app.example.com #042917"));
        let call = templates.render(Channel::Call, &code(), None, ttl);
        assert_eq!(call, "Your verification code is 0, 4, 2, 9, 1, 7");
        let whatsapp = templates.render(Channel::Whatsapp, &code(), None, ttl);
        assert_eq!(whatsapp, "Your verification code is 042917");
    }

    #[test]
    fn bad_templates_hashes_and_domains_stop_the_start() {
        for (vars, variable) in [
            (vec![("SMS_TEMPLATE", "no code")], "SMS_TEMPLATE"),
            (
                vec![("SMS_TEMPLATE_PT_BR", "Seu código")],
                "SMS_TEMPLATE_<TAG>",
            ),
            (vec![("SMS_TEMPLATE_P1", "{code}")], "SMS_TEMPLATE_<TAG>"),
            (vec![("ANDROID_APP_HASH", "short")], "ANDROID_APP_HASH"),
            (
                vec![("ANDROID_APP_HASH", "FA+9qCX9VSu!")],
                "ANDROID_APP_HASH",
            ),
            (
                vec![("WEBOTP_DOMAIN", "https://app.example.com")],
                "WEBOTP_DOMAIN",
            ),
            (
                vec![("WEBOTP_DOMAIN", "app.example.com:443")],
                "WEBOTP_DOMAIN",
            ),
            (vec![("WEBOTP_DOMAIN", "localhost")], "WEBOTP_DOMAIN"),
        ] {
            let err = config(&vars).unwrap_err();
            assert_eq!(err.variable, variable, "{vars:?}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }
}
