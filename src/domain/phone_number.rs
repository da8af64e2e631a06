//! `PhoneNumber`: a valid E.164 number, parsed with libphonenumber's metadata (and a cache of recent parses).

use std::fmt;
use std::sync::OnceLock;

/// Longest input we hand to the parser. An E.164 number has at most 15 digits; the rest of the budget
/// is for the tolerated separators. Anything longer is rejected before libphonenumber sees it.
const MAX_INPUT_LEN: usize = 64;

/// How many recently parsed numbers are remembered (about 100 bytes each).
const RECENTLY_PARSED_CAPACITY: usize = 4096;

/// Numbers that libphonenumber accepted lately, by their digits. A verify nearly always follows a
/// send of the same number within minutes, and libphonenumber's parse is the largest single cost of
/// a request in the service itself (~11 % of its CPU under load). Only valid numbers are kept, so a
/// stream of junk cannot evict them, and the metadata is fixed for the life of the process, so an
/// entry never goes stale.
fn recently_parsed() -> &'static quick_cache::sync::Cache<String, PhoneNumber> {
    static CACHE: OnceLock<quick_cache::sync::Cache<String, PhoneNumber>> = OnceLock::new();
    CACHE.get_or_init(|| quick_cache::sync::Cache::new(RECENTLY_PARSED_CAPACITY))
}

/// A phone number that libphonenumber's metadata says is valid, held in E.164 form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    /// ISO 3166 alpha-2 region of the number, when the metadata knows one (`US`, `FR`, …).
    region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number is too long")]
    TooLong,
    #[error("the phone number must start with `+` and its country code (E.164)")]
    MissingPlus,
    #[error("the phone number may only hold digits, spaces, dots, dashes and parentheses")]
    InvalidCharacter,
    #[error("the phone number is not a valid number")]
    Invalid,
}

impl PhoneNumber {
    /// Parses a number given in E.164 form. Spaces, dots, dashes and parentheses are tolerated and
    /// removed; letters (which the parser would map through the keypad) and extensions (which it
    /// would drop silently) are refused, so the number we verify is exactly the one the user typed.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        if input.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(PhoneNumberError::TooLong);
        }
        let Some(rest) = input.strip_prefix('+') else {
            return Err(PhoneNumberError::MissingPlus);
        };
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(PhoneNumberError::InvalidCharacter),
            }
        }
        // E.164 allows at most 15 digits after the `+`.
        if digits.len() < 3 || digits.len() > 16 {
            return Err(PhoneNumberError::Invalid);
        }
        if let Some(known) = recently_parsed().get(digits.as_str()) {
            return Ok(known);
        }
        let number = phonenumber::parse(None, &digits).map_err(|_| PhoneNumberError::Invalid)?;
        if !phonenumber::is_valid(&number) || number.extension().is_some() {
            return Err(PhoneNumberError::Invalid);
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        let region = number.country().id().map(|id| id.as_ref().to_string());
        let parsed = Self { e164, region };
        recently_parsed().insert(digits, parsed.clone());
        Ok(parsed)
    }

    /// ISO 3166 alpha-2 code of the number's region (`US`, `GB`, …), if the metadata has one.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The number with all but its last four digits hidden, for logs.
    pub fn masked(&self) -> String {
        let digits = &self.e164[1..];
        let keep = digits.len().min(4);
        format!(
            "+{}{}",
            "*".repeat(digits.len() - keep),
            &digits[digits.len() - keep..]
        )
    }

    /// Loads libphonenumber's metadata, which the first parse in a process otherwise pays for
    /// (about 100 ms) on a user's request.
    pub fn warm_up() {
        for sample in [
            "+12125551234",
            "+442071234567",
            "+33612345678",
            "+4915123456789",
        ] {
            let _ = Self::parse(sample);
        }
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.e164
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

/// Masked, so a number that ends up in a `{:?}` never reaches a log in full.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_numbers_normalize_to_e164() {
        for (input, e164, region) in [
            ("+12125551234", "+12125551234", "US"),
            ("+1 212 555 1234", "+12125551234", "US"),
            ("+1 (212) 555-1234", "+12125551234", "US"),
            ("+1.212.555.1234", "+12125551234", "US"),
            ("+33612345678", "+33612345678", "FR"),
            ("+44 20 7123 4567", "+442071234567", "GB"),
        ] {
            let n = PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(n.as_ref(), e164);
            assert_eq!(n.region(), Some(region));
        }
    }

    #[test]
    fn invalid_numbers_are_rejected() {
        for input in [
            "",
            "12125551234",             // no plus
            "0012125551234",           // international prefix instead of plus
            " +12125551234",           // leading space
            "+999123",                 // no such country code
            "+4420712345678",          // one digit too many for London
            "+1 212 555 1234 ext. 99", // extension
            "+1 212 555 1234 abc",     // letters
            "+1-800-FLOWERS",          // vanity letters
            "tel:+1-212-555-1234",
            "＋１２１２５５５１２３４",
            "+",
            "+1",
            "+1234567890123456", // 16 digits
            "+1 212 555 1234\n",
        ] {
            assert!(PhoneNumber::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn huge_inputs_are_rejected_before_parsing() {
        let huge = format!("+{}", "1".repeat(100 * 1024));
        assert_eq!(PhoneNumber::parse(&huge), Err(PhoneNumberError::TooLong));
        let parens = "(".repeat(100 * 1024);
        assert_eq!(PhoneNumber::parse(&parens), Err(PhoneNumberError::TooLong));
    }

    #[test]
    fn masking_keeps_only_the_last_four_digits() {
        let n = PhoneNumber::parse("+12125551234").unwrap();
        assert_eq!(n.masked(), "+*******1234");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+*******1234)");
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepts_only_e164_output(s in "\\PC{0,80}") {
            if let Ok(n) = PhoneNumber::parse(&s) {
                prop_assert!(n.as_ref().starts_with('+'));
                prop_assert!(n.as_ref()[1..].chars().all(|c| c.is_ascii_digit()));
                // Parsing the normalized form gives the same number back.
                prop_assert_eq!(PhoneNumber::parse(n.as_ref()).unwrap(), n);
            }
        }
    }
}
