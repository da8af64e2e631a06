//! Reading variables: where they come from (`Source`), how a value is typed (`Vars`), and the one
//! error a bad value gives (`ConfigError`, naming the variable).

use std::collections::HashMap;
use std::time::Duration;

/// A bad or missing variable: stops the start with one line, `invalid configuration: NAME: why`.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// Reads variables from somewhere: the process environment in production, a map in tests (so tests
/// never call the racy `std::env::set_var`).
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;

    /// Every variable's name, for families such as `SMS_TEMPLATE_<TAG>`.
    fn names(&self) -> Vec<String>;
}

pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }

    fn names(&self) -> Vec<String> {
        self.keys().map(|k| k.to_string()).collect()
    }
}

/// Typed reads with the variable's name in every error. Each settings section reads its own
/// variables through this.
pub struct Vars<'a>(pub(crate) &'a dyn Source);

impl Vars<'_> {
    /// A variable's value; set-but-empty counts as unset, as `.env` files often hold `NAME=`.
    pub fn string(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The names of the variables that start with `prefix`, sorted (so errors are stable).
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .names()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.string(name).unwrap_or_else(|| default.to_string())
    }

    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let raw = self.string_or(name, default);
        raw.parse()
            .map_err(|_| ConfigError::new(name, format!("expected {expected}, got `{raw}`")))
    }

    /// One of a fixed set of words; `None` when unset.
    pub fn choice<T: Copy>(
        &self,
        name: &'static str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.string(name) else {
            return Ok(None);
        };
        match choices.iter().find(|(word, _)| *word == raw) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let words: Vec<String> = choices.iter().map(|(w, _)| format!("`{w}`")).collect();
                let expected = match words.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                };
                Err(ConfigError::new(
                    name,
                    format!("expected {expected}, got `{raw}`"),
                ))
            }
        }
    }

    pub fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
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

    pub fn ranged(
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

    /// `ranged`, for counts that fit a `u32`.
    pub fn count(
        &self,
        name: &'static str,
        default: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, ConfigError> {
        Ok(self.ranged(name, default.into(), min.into(), max.into())? as u32)
    }

    /// Whole seconds within a range, as a duration.
    pub fn seconds(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.ranged(name, default, min, max)?))
    }

    /// Whole milliseconds within a range, as a duration.
    pub fn millis(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.ranged(name, default, min, max)?))
    }

    /// A comma-separated list, trimmed, without empty entries; empty when unset.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.string(name)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An http(s) URL, without a trailing slash.
    pub fn url(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let raw = self.string_or(name, default);
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
