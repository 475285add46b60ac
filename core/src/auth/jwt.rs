//! Access tokens: short-lived HS256 JWTs with a pinned algorithm, `kid`, issuer and audience.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};

pub const ISSUER: &str = "tms";
pub const AUDIENCE: &str = "tms-api";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Signing and verification keys derived from one secret. The `kid` is a digest prefix of the
/// secret so rotated keys can be told apart without revealing anything about them.
#[derive(Clone)]
pub struct JwtKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl_seconds: i64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_seconds: i64) -> Result<Self> {
        if secret.len() < 32 {
            return Err(Error::field(
                "TMS_JWT_SECRET",
                "must be at least 32 bytes long",
            ));
        }
        let kid = hex::encode(&Sha256::digest(secret)[..8]);
        Ok(Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_seconds,
        })
    }

    pub fn issue(&self, user_id: Uuid, email: &str) -> Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            email: email.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_seconds,
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)
    }

    /// Verifies signature (HS256 only), `kid`, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let invalid = || Error::Unauthenticated("invalid or expired access token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::HS256 || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(invalid());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let keys = JwtKeys::new(&[7u8; 48], 900).unwrap();
        let id = Uuid::new_v4();
        let token = keys.issue(id, "a@b").unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, id);

        let other = JwtKeys::new(&[8u8; 48], 900).unwrap();
        assert!(other.verify(&token).is_err(), "other key must not verify");

        let expired = JwtKeys::new(&[7u8; 48], -60).unwrap();
        let old = expired.issue(id, "a@b").unwrap();
        assert!(keys.verify(&old).is_err(), "expired token must fail");

        assert!(JwtKeys::new(b"short", 900).is_err());
    }
}
