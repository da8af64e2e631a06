//! The signed result of a verification: an HS256 JWT another backend can check with the shared
//! secret, without calling this service.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{ConfigError, Vars};
use crate::domain::PhoneNumber;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The verified number, E.164.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The verification's id: lets a consumer refuse a token it has seen before.
    pub jti: String,
    pub phone_number_verified: bool,
}

/// `VERIFICATION_TOKEN_SECRET` (enables tokens) and `VERIFICATION_TOKEN_TTL_SECONDS`.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub secret: Option<SecretString>,
    pub ttl: Duration,
}

impl TokenSettings {
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let secret = vars.string("VERIFICATION_TOKEN_SECRET");
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::new(
                "VERIFICATION_TOKEN_SECRET",
                "must be at least 32 bytes (HS256 key)",
            ));
        }
        Ok(Self {
            secret: secret.map(SecretString::from),
            ttl: vars.seconds("VERIFICATION_TOKEN_TTL_SECONDS", 900, 1, 86_400 * 30)?,
        })
    }

    /// The signer, when a secret is set.
    pub fn signer(&self) -> Option<TokenSigner> {
        self.secret
            .as_ref()
            .map(|secret| TokenSigner::new(secret, self.ttl))
    }
}

#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn sign(
        &self,
        phone: &PhoneNumber,
        verification_id: Uuid,
        verified_at: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let iat = verified_at.unix_timestamp();
        let claims = Claims {
            sub: phone.to_string(),
            iat,
            exp: iat + self.ttl.as_secs() as i64,
            jti: verification_id.to_string(),
            phone_number_verified: true,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn a_token_verifies_with_the_secret_and_carries_the_claims() {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef");
        let signer = TokenSigner::new(&secret, Duration::from_secs(900));
        let phone = PhoneNumber::parse("+12125551234").unwrap();
        let id = Uuid::new_v4();
        let now = OffsetDateTime::now_utc();

        let token = signer.sign(&phone, id, now).unwrap();

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        let data = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims.sub, "+12125551234");
        assert_eq!(data.claims.jti, id.to_string());
        assert_eq!(data.claims.exp - data.claims.iat, 900);
        assert!(data.claims.phone_number_verified);
        assert!(
            jsonwebtoken::decode::<Claims>(
                &token,
                &DecodingKey::from_secret(b"another-secret-another-secret-xx"),
                &validation
            )
            .is_err()
        );
    }
}
