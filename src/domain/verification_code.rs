//! `VerificationCode` (N random digits, hidden from `Debug`) and `CodeHasher` (its HMAC, bound to the number).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;

use super::PhoneNumber;

/// A one-time code: exactly `length` ASCII digits. `Debug` hides it so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the code must be exactly {expected} digits")]
pub struct VerificationCodeError {
    pub expected: usize,
}

impl VerificationCode {
    /// A fresh code, each digit drawn uniformly from the thread-local CSPRNG, so all `10^length`
    /// codes (leading zeros included) are equally likely.
    pub fn generate(length: usize) -> Self {
        let mut rng = rand::rng();
        Self(
            (0..length)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect(),
        )
    }

    pub fn parse(input: &str, length: usize) -> Result<Self, VerificationCodeError> {
        if input.len() == length && input.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(input.to_string()))
        } else {
            Err(VerificationCodeError { expected: length })
        }
    }

    /// The code itself, for the SMS body. Everything else should use the hash.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerificationCode(******)")
    }
}

/// HMAC-SHA256 of a code, bound to the phone number it was sent to, so a stolen table reveals no
/// codes and a hash cannot be replayed for another number.
#[derive(Clone)]
pub struct CodeHasher {
    key: Vec<u8>,
}

impl CodeHasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    pub fn hash(&self, phone: &PhoneNumber, code: &VerificationCode) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(phone.as_ref().as_bytes());
        mac.update(b":");
        mac.update(code.0.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHasher([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_codes_have_the_requested_length_and_only_digits() {
        for length in 4..=10 {
            for _ in 0..100 {
                let code = VerificationCode::generate(length);
                assert_eq!(code.expose().len(), length);
                assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn generated_codes_can_start_with_zero_and_use_every_digit() {
        // With 4-digit codes a leading zero turns up in 10% of draws; 2,000 draws miss it with
        // probability 0.9^2000, which is nil.
        let codes: Vec<_> = (0..2_000).map(|_| VerificationCode::generate(4)).collect();
        assert!(codes.iter().any(|c| c.expose().starts_with('0')));
        for digit in '0'..='9' {
            assert!(codes.iter().any(|c| c.expose().contains(digit)), "{digit}");
        }
    }

    #[test]
    fn parse_accepts_exactly_n_ascii_digits() {
        assert!(VerificationCode::parse("012345", 6).is_ok());
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            " 12345",
            "１２３４５６",
            "12 456",
            "-12345",
        ] {
            assert!(VerificationCode::parse(bad, 6).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_code() {
        let code = VerificationCode::parse("123456", 6).unwrap();
        assert!(!format!("{code:?}").contains("123456"));
    }

    #[test]
    fn hashes_depend_on_key_number_and_code() {
        let a = PhoneNumber::parse("+12125551234").unwrap();
        let b = PhoneNumber::parse("+12125551235").unwrap();
        let code = VerificationCode::parse("123456", 6).unwrap();
        let other = VerificationCode::parse("123457", 6).unwrap();
        let h = CodeHasher::new(b"key");
        assert_eq!(h.hash(&a, &code), h.hash(&a, &code));
        assert_ne!(h.hash(&a, &code), h.hash(&b, &code));
        assert_ne!(h.hash(&a, &code), h.hash(&a, &other));
        assert_ne!(h.hash(&a, &code), CodeHasher::new(b"other").hash(&a, &code));
    }

    proptest! {
        #[test]
        fn parse_round_trips_generated_codes(length in 4usize..=10) {
            let code = VerificationCode::generate(length);
            prop_assert_eq!(VerificationCode::parse(code.expose(), length).unwrap(), code);
        }
    }
}
