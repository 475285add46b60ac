//! Helpers for the session tests: forging access tokens (with our key or others), signing in,
//! refreshing, and reading audit rows and refresh-token state straight from Postgres.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::Digest;

use crate::{TestEnv, psql};

/// The `kid` the api gives a secret: the first 8 bytes of its SHA-256, hex.
pub fn kid_of(secret: &str) -> String {
    hex::encode(&sha2::Sha256::digest(secret.as_bytes())[..8])
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// `header.claims` signed HS256 with `key`, whatever the header claims.
pub fn hs256(header: &Value, claims: &Value, key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let input = signing_input(header, claims);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// `header.claims` signed RS256 with the PEM private key at `key_path` (by `openssl dgst`).
pub fn rs256(header: &Value, claims: &Value, key_path: &str) -> Result<String> {
    let input = signing_input(header, claims);
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", key_path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!("{input}.{}", B64.encode(out.stdout)))
}

/// The header the api puts on its access tokens, for `secret`.
pub fn our_header(secret: &str) -> Value {
    json!({"alg": "HS256", "typ": "at+jwt", "kid": kid_of(secret)})
}

/// Valid access-token claims for `user_id`, expiring in `ttl` seconds.
pub fn claims(user_id: &str, email: &str, ttl: i64) -> Value {
    let now = now();
    json!({
        "sub": user_id, "email": email, "iss": "tms", "aud": "tms-api",
        "iat": now, "exp": now + ttl, "jti": uuid::Uuid::new_v4(),
    })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The decoded header and payload of a JWT.
pub fn decode(token: &str) -> Result<(Value, Value)> {
    let mut parts = token.split('.');
    let mut part = || -> Result<Value> {
        let p = parts.next().ok_or_else(|| anyhow!("not a JWT: {token}"))?;
        Ok(serde_json::from_slice(&B64.decode(p)?)?)
    };
    Ok((part()?, part()?))
}

pub const LOGIN: &str = "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken refreshToken expiresIn tokenType}}";
pub const REFRESH: &str =
    "mutation($r:String!){refreshToken(refreshToken:$r){accessToken refreshToken expiresIn}}";
pub const LOGOUT: &str = "mutation($r:String!){logout(refreshToken:$r)}";
pub const ME: &str = "{ me { id email } }";

/// (access token, refresh token) of a successful sign-in.
pub async fn login(env: &TestEnv, email: &str, password: &str) -> Result<(String, String)> {
    let v = env
        .gql_raw(None, LOGIN, json!({"e": email, "p": password}))
        .await?;
    pair(&v["data"]["login"]).ok_or_else(|| anyhow!("login failed: {v}"))
}

pub fn pair(v: &Value) -> Option<(String, String)> {
    Some((
        v["accessToken"].as_str()?.to_string(),
        v["refreshToken"].as_str()?.to_string(),
    ))
}

/// The whole `refreshToken` response.
pub async fn refresh(env: &TestEnv, refresh_token: &str) -> Result<Value> {
    env.gql_raw(None, REFRESH, json!({"r": refresh_token}))
        .await
}

/// `me` with `token`: `Ok(email)` or the error code.
pub async fn me(env: &TestEnv, token: &str) -> Result<Result<String, String>> {
    let v = env.gql_raw(Some(token), ME, json!({})).await?;
    Ok(match v["data"]["me"]["email"].as_str() {
        Some(e) => Ok(e.to_string()),
        None => Err(crate::error_code(&v)),
    })
}

/// Audit rows of `action` as `outcome|resource|actor_id|detail`, oldest first.
pub fn audit_rows(env: &TestEnv, action: &str) -> Result<Vec<String>> {
    let out = psql(
        &env.database_url,
        &[
            "-F",
            "|",
            "-c",
            &format!(
                "SELECT outcome, resource, coalesce(actor_id::text, ''), detail::text FROM audit_log
                 WHERE action = '{action}' ORDER BY seq"
            ),
        ],
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Live (unrotated, unexpired, family not revoked) refresh tokens of `user_id`.
pub fn live_refresh_tokens(env: &TestEnv, user_id: &str) -> Result<i64> {
    let out = psql(
        &env.database_url,
        &[
            "-c",
            &format!(
                "SELECT count(*) FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
                 WHERE f.user_id = '{user_id}' AND f.revoked_at IS NULL AND t.rotated_at IS NULL
                 AND t.idle_expires_at > now() AND f.expires_at > now()"
            ),
        ],
    )?;
    Ok(out.trim().parse()?)
}

/// A second account with `role` and the admin's password; returns its id.
pub fn add_user(env: &TestEnv, email: &str, role: &str) -> Result<String> {
    let id = psql(
        &env.database_url,
        &[
            "-c",
            &format!(
                "INSERT INTO users (id, email, display_name, password_hash)
                 SELECT gen_random_uuid(), '{email}', 'Second', password_hash FROM users
                 WHERE email = '{}' RETURNING id",
                crate::ADMIN_EMAIL
            ),
        ],
    )?;
    let id = id.lines().next().unwrap_or_default().trim().to_string();
    psql(
        &env.database_url,
        &[
            "-c",
            &format!("INSERT INTO user_roles (user_id, role) VALUES ('{id}', '{role}')"),
        ],
    )?;
    Ok(id)
}

/// SHA-256 hex, as refresh tokens are stored.
pub fn hash_hex(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
