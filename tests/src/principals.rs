//! Callers holding chosen roles, for the RBAC tests: API tokens created by the admin, and local
//! accounts (password) whose roles are assigned through the API.

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use crate::{ADMIN_PASSWORD, TestEnv, psql};

/// The GraphQL spelling of a role (`VIEWER`).
pub fn role_name(role: tms_core::auth::Role) -> String {
    role.as_str().to_uppercase()
}

/// A new API token holding `role`, created by the admin: `(id, secret)`.
pub async fn api_token(env: &TestEnv, name: &str, role: &str) -> Result<(String, String)> {
    let d = env
        .gql(
            "mutation($n:String!,$r:Role!){createApiToken(name:$n,role:$r,expiresInDays:30){
               token apiToken{id name role createdAt expiresAt lastUsedAt}}}",
            json!({"n": name, "r": role}),
        )
        .await?;
    let p = &d["createApiToken"];
    let id = p["apiToken"]["id"].as_str().ok_or_else(|| anyhow!("{d}"))?;
    let secret = p["token"].as_str().ok_or_else(|| anyhow!("{d}"))?;
    Ok((id.to_string(), secret.to_string()))
}

/// A local account `email` (the admin's password) holding `roles`, assigned by the admin
/// through `assignRole`; returns `(user id, access token)`.
pub async fn local_user(env: &TestEnv, email: &str, roles: &[&str]) -> Result<(String, String)> {
    let id = psql(
        &env.database_url,
        &[
            "-c",
            &format!(
                "INSERT INTO users (id, email, display_name, password_hash)
                 SELECT gen_random_uuid(), '{email}', 'Test user', password_hash FROM users
                 WHERE email = '{}' RETURNING id",
                crate::ADMIN_EMAIL
            ),
        ],
    )?;
    let id = id.lines().next().unwrap_or_default().trim().to_string();
    for r in roles {
        env.gql(
            "mutation($u:ID!,$r:Role!){assignRole(userId:$u,role:$r){id}}",
            json!({"u": id, "r": r}),
        )
        .await?;
    }
    let v = env
        .gql_raw(
            None,
            "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken}}",
            json!({"e": email, "p": ADMIN_PASSWORD}),
        )
        .await?;
    let token = v["data"]["login"]["accessToken"]
        .as_str()
        .ok_or_else(|| anyhow!("login of {email} failed: {v}"))?;
    Ok((id, token.to_string()))
}

/// Rows of `sql` (one column) from the test's database.
pub fn rows(env: &TestEnv, sql: &str) -> Result<Vec<String>> {
    Ok(psql(&env.database_url, &["-c", sql])?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `resp`'s first error code, or `None` when it has no errors.
pub fn code(resp: &Value) -> Option<String> {
    resp.get("errors").map(|_| crate::error_code(resp))
}
