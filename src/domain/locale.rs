//! `Locale`: a BCP 47 language tag as a client sends it (`en`, `pt-BR`, `zh-Hant-TW`), checked for
//! shape only: which tags a template or a provider knows is theirs to say.

use std::fmt;

/// The longest tag accepted (API.md): enough for any tag in real use.
pub const MAX_LOCALE_LEN: usize = 35;

/// A language tag: subtags of ASCII letters and digits joined by `-`, the first (the language)
/// letters only, at most 35 characters in all. Case is kept as sent; comparisons ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`locale` must be a BCP 47 language tag such as `en` or `pt-BR` (letters, digits and `-`, at most 35 characters)"
)]
pub struct LocaleError;

impl Locale {
    pub fn parse(input: &str) -> Result<Self, LocaleError> {
        let well_formed = (1..=MAX_LOCALE_LEN).contains(&input.len())
            && input.split('-').enumerate().all(|(i, subtag)| {
                (1..=8).contains(&subtag.len())
                    && subtag.bytes().all(|b| b.is_ascii_alphanumeric())
                    && (i > 0
                        || (subtag.len() >= 2 && subtag.bytes().all(|b| b.is_ascii_alphabetic())))
            });
        if well_formed {
            Ok(Self(input.to_string()))
        } else {
            Err(LocaleError)
        }
    }

    /// The primary language subtag, lower-cased: `pt` for `pt-BR`.
    pub fn language(&self) -> String {
        self.0
            .split('-')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// Whether this is the language alone (`pt`, not `pt-BR`).
    pub fn is_language_only(&self) -> bool {
        !self.0.contains('-')
    }

    /// The tag as a variable-name suffix: upper-cased, `-` as `_` (`pt-BR` → `PT_BR`).
    pub fn env_suffix(&self) -> String {
        self.0.to_ascii_uppercase().replace('-', "_")
    }
}

impl AsRef<str> for Locale {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_tags_are_kept_as_sent() {
        for tag in [
            "en",
            "pt-BR",
            "zh-Hant-TW",
            "es-419",
            "sr-Latn-RS",
            "de-CH-1996",
        ] {
            assert_eq!(Locale::parse(tag).unwrap().as_ref(), tag);
        }
        let long = format!("en-{}", ["abcdefgh"; 4].join("-")); // 38 characters
        assert!(Locale::parse(&long).is_err());
        let max = "abcdefgh-abcdefgh-abcdefgh-abcdefg"; // 34
        assert!(Locale::parse(max).is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "-",
            "en-",
            "-en",
            "en--US",
            "e",
            "1en",
            "en_US",
            "pt BR",
            "en-US!",
            "ü",
            "en-abcdefghi",
            "<en>",
        ] {
            assert_eq!(Locale::parse(bad), Err(LocaleError), "{bad:?}");
        }
    }

    #[test]
    fn language_and_suffix() {
        let tag = Locale::parse("pt-BR").unwrap();
        assert_eq!(tag.language(), "pt");
        assert_eq!(tag.env_suffix(), "PT_BR");
        assert!(!tag.is_language_only());
        assert!(Locale::parse("DE").unwrap().is_language_only());
        assert_eq!(
            Locale::parse("zh-Hant-TW").unwrap().env_suffix(),
            "ZH_HANT_TW"
        );
    }
}
