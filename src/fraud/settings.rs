//! The fraud guard's settings: the mode, what a prefix is, the window and the block's length, the
//! floors and the ratio, and the safe list.

use std::time::Duration;

use crate::config::{AppEnv, ConfigError, Vars};

/// What the guard does with a send over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudMode {
    /// Counts nothing.
    Off,
    /// Counts, and logs, counts and lists the blocks it would have made, but refuses nothing.
    Monitor,
    /// Refuses sends over the limit and to blocked scopes.
    Enforce,
}

impl FraudMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudMode::Off => "off",
            FraudMode::Monitor => "monitor",
            FraudMode::Enforce => "enforce",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FraudSettings {
    pub mode: FraudMode,
    /// Digits of the E.164 number (country code included) that make a prefix (3 to 10).
    pub prefix_digits: usize,
    pub window: Duration,
    pub block: Duration,
    pub min_unverified_per_prefix: u32,
    pub min_unverified_per_country: u32,
    /// 0 to 100.
    pub unverified_ratio: f64,
    /// E.164 numbers and prefixes (`+` and digits) the guard leaves alone.
    pub safe_list: Vec<String>,
}

impl FraudSettings {
    pub fn from_vars(vars: &Vars<'_>, app_env: AppEnv) -> Result<Self, ConfigError> {
        let default_mode = match app_env {
            AppEnv::Production => FraudMode::Enforce,
            AppEnv::Development => FraudMode::Monitor,
        };
        let mode = vars
            .choice(
                "FRAUD_GUARD",
                &[
                    ("enforce", FraudMode::Enforce),
                    ("monitor", FraudMode::Monitor),
                    ("off", FraudMode::Off),
                ],
            )?
            .unwrap_or(default_mode);
        Ok(Self {
            mode,
            prefix_digits: vars.count("FRAUD_PREFIX_DIGITS", 6, 3, 10)? as usize,
            window: vars.seconds("FRAUD_WINDOW_MINUTES", 1440, 1, 43_200)? * 60,
            block: vars.seconds("FRAUD_BLOCK_MINUTES", 720, 1, 43_200)? * 60,
            min_unverified_per_prefix: vars.count(
                "FRAUD_MIN_UNVERIFIED_PER_PREFIX",
                20,
                1,
                1_000_000,
            )?,
            min_unverified_per_country: vars.count(
                "FRAUD_MIN_UNVERIFIED_PER_COUNTRY",
                100,
                1,
                1_000_000,
            )?,
            unverified_ratio: parse_ratio(vars)?,
            safe_list: parse_safe_list(vars)?,
        })
    }
}

fn parse_ratio(vars: &Vars<'_>) -> Result<f64, ConfigError> {
    const NAME: &str = "FRAUD_UNVERIFIED_RATIO";
    let Some(raw) = vars.string(NAME) else {
        return Ok(1.0);
    };
    match raw.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=100.0).contains(&r) => Ok(r),
        _ => Err(ConfigError::new(
            NAME,
            format!("expected a decimal from 0 to 100, got `{raw}`"),
        )),
    }
}

fn parse_safe_list(vars: &Vars<'_>) -> Result<Vec<String>, ConfigError> {
    vars.list("FRAUD_SAFE_LIST")
        .into_iter()
        .map(|entry| {
            let digits = entry.strip_prefix('+').unwrap_or("");
            if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(entry)
            } else {
                Err(ConfigError::new(
                    "FRAUD_SAFE_LIST",
                    format!("expected E.164 numbers or prefixes such as +447400, got `{entry}`"),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)], env: AppEnv) -> Result<FraudSettings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FraudSettings::from_vars(&Vars(&map), env)
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = settings(&[], AppEnv::Development).unwrap();
        assert_eq!(s.mode, FraudMode::Monitor);
        assert_eq!(s.prefix_digits, 6);
        assert_eq!(s.window, Duration::from_secs(1440 * 60));
        assert_eq!(s.block, Duration::from_secs(720 * 60));
        assert_eq!(s.min_unverified_per_prefix, 20);
        assert_eq!(s.min_unverified_per_country, 100);
        assert_eq!(s.unverified_ratio, 1.0);
        assert!(s.safe_list.is_empty());
        let prod = settings(&[], AppEnv::Production).unwrap();
        assert_eq!(prod.mode, FraudMode::Enforce);
        let off = settings(&[("FRAUD_GUARD", "off")], AppEnv::Production).unwrap();
        assert_eq!(off.mode, FraudMode::Off);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("FRAUD_GUARD", "block"),
            ("FRAUD_PREFIX_DIGITS", "2"),
            ("FRAUD_PREFIX_DIGITS", "11"),
            ("FRAUD_WINDOW_MINUTES", "0"),
            ("FRAUD_BLOCK_MINUTES", "43201"),
            ("FRAUD_MIN_UNVERIFIED_PER_PREFIX", "0"),
            ("FRAUD_MIN_UNVERIFIED_PER_COUNTRY", "1000001"),
            ("FRAUD_UNVERIFIED_RATIO", "101"),
            ("FRAUD_UNVERIFIED_RATIO", "-0.5"),
            ("FRAUD_UNVERIFIED_RATIO", "NaN"),
            ("FRAUD_SAFE_LIST", "+4474,447400"),
            ("FRAUD_SAFE_LIST", "+44 74"),
        ] {
            let err = settings(&[(name, value)], AppEnv::Development).unwrap_err();
            assert_eq!(err.variable, name, "{name}={value}");
        }
        let s = settings(
            &[
                ("FRAUD_UNVERIFIED_RATIO", "0.5"),
                ("FRAUD_SAFE_LIST", "+447400, +15005550006"),
            ],
            AppEnv::Development,
        )
        .unwrap();
        assert_eq!(s.unverified_ratio, 0.5);
        assert_eq!(s.safe_list, ["+447400", "+15005550006"]);
    }
}
