//! The access-token key ring: one signing key and older keys that still verify, named by `kid`.
//!
//! Keys are HMAC secrets (HS256, the one algorithm accepted). A key's `kid` is a digest prefix
//! of its secret, so the same secret always has the same `kid` whichever variable carries it,
//! and a rotated key can be told apart without revealing anything about it.

use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Shortest secret accepted: 256 bits, the HS256 output size (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::field(
                "TMS_JWT_SECRET",
                "must be at least 32 bytes long",
            ));
        }
        Ok(Key {
            kid: kid_of(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }
}

pub fn kid_of(secret: &[u8]) -> String {
    hex::encode(&Sha256::digest(secret)[..8])
}

/// The first key signs; every key (the signing one included) verifies tokens carrying its `kid`.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// `secrets` newest first. Duplicates are dropped; at least one secret is required.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Result<Self> {
        let mut keys: Vec<Key> = Vec::new();
        for s in secrets {
            let k = Key::new(s.as_ref())?;
            if !keys.iter().any(|have| have.kid == k.kid) {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Err(Error::field("TMS_JWT_KEYS", "no signing key configured"));
        }
        Ok(KeyRing { keys })
    }

    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    /// The key named `kid`; `None` for a `kid` this ring does not hold.
    pub fn verifying(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }
}

/// Reads the secrets of `TMS_JWT_SECRET` and `TMS_JWT_KEYS`, newest (signing) first.
///
/// `TMS_JWT_KEYS` is a comma-separated list of secrets, newest first, or `@<path>` naming a
/// file with one secret per line (blank lines and `#` comments skipped). When both are set,
/// `TMS_JWT_SECRET` signs and every `TMS_JWT_KEYS` entry only verifies (the usual rotation:
/// new secret in `TMS_JWT_SECRET`, the previous one moved to `TMS_JWT_KEYS` until the access
/// tokens it signed have expired).
pub fn secrets_from(secret: Option<&str>, keys: Option<&str>) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        out.push(s.as_bytes().to_vec());
    }
    if let Some(list) = keys.map(str::trim).filter(|s| !s.is_empty()) {
        let entries: Vec<String> = match list.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::field("TMS_JWT_KEYS", format!("cannot read {path}: {e}")))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
            None => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        for e in entries {
            if e.len() < MIN_SECRET_BYTES {
                return Err(Error::field(
                    "TMS_JWT_KEYS",
                    "every key must be at least 32 bytes long",
                ));
            }
            out.push(e.into_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_signs_all_verify_duplicates_collapse() {
        let a = [1u8; 40];
        let b = [2u8; 40];
        let ring = KeyRing::new(&[&a[..], &b[..], &a[..]]).unwrap();
        assert_eq!(ring.signing().kid, kid_of(&a));
        assert_eq!(ring.kids().len(), 2);
        assert!(ring.verifying(&kid_of(&b)).is_some());
        assert!(ring.verifying("0011223344556677").is_none());
        assert!(KeyRing::new::<&[u8]>(&[]).is_err());
        assert!(KeyRing::new(&[b"short"]).is_err());
    }

    #[test]
    fn secrets_come_from_both_variables_and_files() {
        let s = "s".repeat(32);
        let k1 = "1".repeat(32);
        let k2 = "2".repeat(32);
        let got = secrets_from(Some(&s), Some(&format!("{k1}, {k2}"))).unwrap();
        assert_eq!(
            got,
            vec![
                s.clone().into_bytes(),
                k1.clone().into_bytes(),
                k2.clone().into_bytes()
            ]
        );
        let dir = std::env::temp_dir().join(format!("tms-keys-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, format!("# newest first\n{k2}\n\n{k1}\n")).unwrap();
        let got = secrets_from(None, Some(&format!("@{}", dir.display()))).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(got, vec![k2.into_bytes(), k1.into_bytes()]);
        assert!(secrets_from(None, Some("tooshort")).is_err());
        assert!(secrets_from(None, None).unwrap().is_empty());
    }
}
