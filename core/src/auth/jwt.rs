//! Access tokens (RFC 9068 profile): short-lived JWTs, `typ: at+jwt`, HS256 pinned, `kid` from
//! the key ring, `iss sub aud exp iat jti` required and `nbf` honoured.
//!
//! Only the header's `alg`, `typ` and `kid` are read. `jku`, `jwk`, `x5u`, `x5c` are never
//! fetched or trusted: a token is verified with a key of our ring or not at all.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::keys::KeyRing;
use crate::error::{Error, Result};

pub const ISSUER: &str = "tms";
pub const AUDIENCE: &str = "tms-api";
/// The JWT `typ` of access tokens (RFC 9068 §2.1); ID tokens or other JWTs signed with the same
/// key are not access tokens.
pub const TYP: &str = "at+jwt";
/// The one signing algorithm; the header's `alg` must say exactly this.
pub const ALG: Algorithm = Algorithm::HS256;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: Uuid,
    /// The refresh-token family (session) this token was issued for: logging out ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// The key ring and the access-token lifetime.
#[derive(Clone)]
pub struct JwtKeys {
    ring: KeyRing,
    pub ttl_seconds: i64,
}

impl JwtKeys {
    /// A ring of one key.
    pub fn new(secret: &[u8], ttl_seconds: i64) -> Result<Self> {
        Ok(Self {
            ring: KeyRing::new(&[secret])?,
            ttl_seconds,
        })
    }

    pub fn from_ring(ring: KeyRing, ttl_seconds: i64) -> Self {
        Self { ring, ttl_seconds }
    }

    pub fn signing_kid(&self) -> &str {
        &self.ring.signing().kid
    }

    /// An access token without a session (no refresh token backs it).
    pub fn issue(&self, user_id: Uuid, email: &str) -> Result<String> {
        self.issue_for(user_id, email, None)
    }

    /// An access token for session (refresh-token family) `sid`.
    pub fn issue_for(&self, user_id: Uuid, email: &str, sid: Option<Uuid>) -> Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            email: email.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_seconds,
            nbf: None,
            jti: Uuid::new_v4(),
            sid,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the current key (tests build odd tokens with it).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let key = self.ring.signing();
        let mut header = Header::new(ALG);
        header.typ = Some(TYP.into());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(Error::internal)
    }

    /// Verifies `alg` (HS256 only), `typ`, `kid` (a key of the ring), the signature with that
    /// key, `exp`, `nbf`, issuer and audience; every failure looks the same to the caller.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let invalid = || Error::Unauthenticated("invalid or expired access token");
        // `decode_header` refuses algorithms it does not know, `none` among them.
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != ALG || header.typ.as_deref() != Some(TYP) {
            return Err(invalid());
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.ring.verifying(kid))
            .ok_or_else(invalid)?;
        let mut validation = Validation::new(ALG);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        // `iat` and `jti` are required by `Claims` itself (not optional there).
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 48], 900).unwrap()
    }

    fn claims(id: Uuid) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: id,
            email: "a@b".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 600,
            nbf: None,
            jti: Uuid::new_v4(),
            sid: None,
        }
    }

    /// Re-signs `header.payload` as HS256 with `secret`, whatever the header says.
    fn hs256(header: &serde_json::Value, payload: &serde_json::Value, secret: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let keys = keys();
        let id = Uuid::new_v4();
        let token = keys.issue(id, "a@b").unwrap();
        let got = keys.verify(&token).unwrap();
        assert_eq!(got.sub, id);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(TYP));
        assert_eq!(header.kid.as_deref(), Some(keys.signing_kid()));

        let other = JwtKeys::new(&[8u8; 48], 900).unwrap();
        assert!(other.verify(&token).is_err(), "other key must not verify");

        let expired = JwtKeys::new(&[7u8; 48], -60).unwrap();
        let old = expired.issue(id, "a@b").unwrap();
        assert!(keys.verify(&old).is_err(), "expired token must fail");

        // Payload changed, signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let mut body: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        body["sub"] = serde_json::json!(Uuid::new_v4());
        let forged = format!("{}.{}.{}", parts[0], B64.encode(body.to_string()), parts[2]);
        assert!(keys.verify(&forged).is_err(), "tampered payload must fail");

        assert!(JwtKeys::new(b"short", 900).is_err());
    }

    #[test]
    fn header_and_claim_rules() {
        let keys = keys();
        let secret = [7u8; 48];
        let kid = keys.signing_kid().to_string();
        let id = Uuid::new_v4();
        let body = serde_json::to_value(claims(id)).unwrap();
        let good = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        assert!(keys.verify(&hs256(&good, &body, &secret)).is_ok());

        let cases = [
            (
                "typ JWT",
                serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
            ),
            ("no typ", serde_json::json!({"alg": "HS256", "kid": kid})),
            (
                "no kid",
                serde_json::json!({"alg": "HS256", "typ": "at+jwt"}),
            ),
            (
                "unknown kid",
                serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": "00ff00ff00ff00ff"}),
            ),
            (
                "alg none",
                serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
            ),
            (
                "alg RS256",
                serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
            ),
            (
                "alg HS512",
                serde_json::json!({"alg": "HS512", "typ": "at+jwt", "kid": kid}),
            ),
        ];
        for (what, header) in cases {
            assert!(
                keys.verify(&hs256(&header, &body, &secret)).is_err(),
                "{what} accepted"
            );
        }
        let unsigned = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
            B64.encode(body.to_string())
        );
        assert!(keys.verify(&unsigned).is_err(), "unsigned token accepted");

        // An attacker key offered in `jwk`/`jku`/`x5u` is never used.
        let attacker = [9u8; 48];
        let jwk = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid,
            "jwk": {"kty": "oct", "k": B64.encode(attacker)},
            "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x5"});
        assert!(keys.verify(&hs256(&jwk, &body, &attacker)).is_err());
        // ... and with our key the token is judged on our key alone.
        assert!(keys.verify(&hs256(&jwk, &body, &secret)).is_ok());

        let now = chrono::Utc::now().timestamp();
        let mut c = claims(id);
        c.nbf = Some(now + 600);
        assert!(
            keys.verify(&keys.sign(&c).unwrap()).is_err(),
            "future nbf accepted"
        );
        c.nbf = Some(now - 10);
        assert!(
            keys.verify(&keys.sign(&c).unwrap()).is_ok(),
            "past nbf refused"
        );
        let mut c = claims(id);
        c.aud = "someone-else".into();
        assert!(
            keys.verify(&keys.sign(&c).unwrap()).is_err(),
            "wrong aud accepted"
        );
        let mut c = claims(id);
        c.iss = "evil".into();
        assert!(
            keys.verify(&keys.sign(&c).unwrap()).is_err(),
            "wrong iss accepted"
        );
        for missing in ["iss", "sub", "aud", "exp", "iat", "jti"] {
            let mut b = body.clone();
            b.as_object_mut().unwrap().remove(missing);
            assert!(
                keys.verify(&hs256(&good, &b, &secret)).is_err(),
                "missing {missing} accepted"
            );
        }
    }

    #[test]
    fn rotation_old_keys_verify_new_key_signs_unknown_refused() {
        let old = [1u8; 40];
        let new = [2u8; 40];
        let before = JwtKeys::from_ring(KeyRing::new(&[&old[..]]).unwrap(), 900);
        let after = JwtKeys::from_ring(KeyRing::new(&[&new[..], &old[..]]).unwrap(), 900);
        let id = Uuid::new_v4();
        let t_old = before.issue(id, "a@b").unwrap();
        assert!(
            after.verify(&t_old).is_ok(),
            "old key must verify after rotation"
        );
        let t_new = after.issue(id, "a@b").unwrap();
        let kid = jsonwebtoken::decode_header(&t_new).unwrap().kid.unwrap();
        assert_eq!(kid, crate::auth::keys::kid_of(&new));
        assert!(
            before.verify(&t_new).is_err(),
            "a ring without the new key must refuse"
        );
        let retired = JwtKeys::from_ring(KeyRing::new(&[&new[..]]).unwrap(), 900);
        assert!(
            retired.verify(&t_old).is_err(),
            "a dropped key must stop verifying"
        );
    }
}
