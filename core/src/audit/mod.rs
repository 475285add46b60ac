//! The tamper-evident audit log: what a security event records, and appending it to the hash
//! chain inside the transaction of the change it records.

pub mod service;

use std::str::FromStr;

use chrono::{SubsecRound, Utc};
use diesel::PgConnection;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{Principal, RequestMeta};
use crate::db::schema::sql_types::{PgAuditAction, PgAuditOutcome};
use crate::error::Result;
use crate::repo;
use crate::repo::audit::AuditRow;
use crate::runs::status::state_enum;

pub use service::{AuditService, ChainReport, require};

state_enum!(Action as PgAuditAction {
    AuthLogin => "auth.login",
    AuthRefresh => "auth.refresh",
    AuthTokenReuse => "auth.token_reuse",
    AuthLogout => "auth.logout",
    RoleAssign => "role.assign",
    RoleRevoke => "role.revoke",
    ApiTokenCreate => "api_token.create",
    ApiTokenRevoke => "api_token.revoke",
    AccessDenied => "access.denied",
    WorkflowCreate => "workflow.create",
    WorkflowUpdate => "workflow.update",
    WorkflowArchive => "workflow.archive",
    RunTrigger => "run.trigger",
    RunCancel => "run.cancel",
    RunRetry => "run.retry",
    ImportApply => "import.apply",
    ImportPhase => "import.phase",
    ImportRollback => "import.rollback",
    UserDisable => "user.disable",
});

state_enum!(Outcome as PgAuditOutcome {
    Success => "success",
    Failure => "failure",
    Denied => "denied",
});

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One security event before it is placed on the chain. `detail` must never hold tokens,
/// passwords or secrets: it is readable by every auditor.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_id: Option<Uuid>,
    pub api_token_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: Action,
    pub resource: String,
    pub outcome: Outcome,
    pub meta: RequestMeta,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// A successful `action` on `resource` by an authenticated caller.
    pub fn by(who: &Principal, action: Action, resource: impl Into<String>) -> Self {
        AuditEntry {
            actor_id: Some(who.user_id),
            api_token_id: who.api_token_id,
            actor_email: Some(who.email.clone()),
            meta: who.meta.clone(),
            ..Self::anonymous(action, resource, &RequestMeta::default())
        }
    }

    /// An event without an authenticated caller (e.g. a failed login).
    pub fn anonymous(action: Action, resource: impl Into<String>, meta: &RequestMeta) -> Self {
        AuditEntry {
            actor_id: None,
            api_token_id: None,
            actor_email: None,
            action,
            resource: resource.into(),
            outcome: Outcome::Success,
            meta: meta.clone(),
            detail: serde_json::json!({}),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Appends `entry` at the head of the chain. Call it inside the transaction of the change it
/// records, as its last statement: the chain head stays locked until that transaction ends, so
/// appenders never fork the chain, and a rolled-back change leaves no row. One round trip: the
/// head is read, bumped and the row inserted by one statement (`repo::audit::append`).
pub fn append(conn: &mut PgConnection, entry: AuditEntry) -> Result<i64> {
    let (row, content) = to_row(entry);
    let stored = repo::audit::append(conn, &row, &content)?;
    appended(&stored);
    Ok(stored.seq)
}

/// `entry` as the row it will be (its `seq` and hashes still unset), with its canonical
/// content: for a statement that appends the row itself (`repo::run_create`).
pub fn to_row(entry: AuditEntry) -> (AuditRow, String) {
    let row = AuditRow {
        seq: 0,
        // Postgres keeps microseconds: hash exactly what will be read back.
        at: Utc::now().trunc_subsecs(6),
        actor_id: entry.actor_id,
        api_token_id: entry.api_token_id,
        actor_email: entry.actor_email,
        action: entry.action,
        resource: entry.resource,
        outcome: entry.outcome,
        ip: entry.meta.ip,
        user_agent: entry.meta.user_agent,
        detail: entry.detail,
        prev_hash: String::new(),
        hash: String::new(),
    };
    let content = content(&row);
    (row, content)
}

/// Counts a row as appended: a transaction rolled back later still counts (rare; the metric is
/// for rates and spikes, the log is the record).
pub fn appended(row: &AuditRow) {
    crate::metrics::auth::record(row.action, row.outcome);
}

/// SHA-256 (hex) over `[seq,<content>,"prev_hash"]`: the row's canonical content and the
/// previous row's hash. The database computes the same when it appends (`repo::audit::append`).
pub fn hash_of(row: &AuditRow) -> String {
    let text = format!(
        "[{},{},{}]",
        row.seq,
        content(row),
        serde_json::Value::String(row.prev_hash.clone())
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The row's canonical content between its `seq` and its `prev_hash`: compact JSON array
/// elements, `detail` with its keys sorted.
fn content(row: &AuditRow) -> String {
    let elements = serde_json::json!([
        row.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        row.actor_id,
        row.api_token_id,
        row.actor_email,
        row.action.as_str(),
        row.resource,
        row.outcome.as_str(),
        row.ip,
        row.user_agent,
        canonical(&row.detail),
    ]);
    let text = canonical_string(&elements);
    text[1..text.len() - 1].to_string()
}

/// Keys sorted at every level, whatever order the JSON map type keeps: the hash must not
/// depend on how `detail` travelled through jsonb.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn canonical_string(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            seq: 1,
            at: Utc::now().trunc_subsecs(6),
            actor_id: None,
            api_token_id: None,
            actor_email: Some("a@b".into()),
            action: Action::AuthLogin,
            resource: "user:a@b".into(),
            outcome: Outcome::Failure,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            detail: serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}}),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn hash_covers_content_and_link_but_not_key_order() {
        let a = row();
        let h = hash_of(&a);
        let mut reordered = a.clone();
        reordered.detail = serde_json::json!({"a": {"c": 3, "d": 2}, "b": 1});
        assert_eq!(hash_of(&reordered), h);
        let mut tampered = a.clone();
        tampered.outcome = Outcome::Success;
        assert_ne!(hash_of(&tampered), h);
        let mut relinked = a.clone();
        relinked.prev_hash = "1".repeat(64);
        assert_ne!(hash_of(&relinked), h);
    }

    /// The chain's hashes are what they were when the whole array was hashed at once: rows
    /// written before the head moved into the database still verify.
    #[test]
    fn hash_is_unchanged_from_the_whole_array_form() {
        for mut r in [
            row(),
            AuditRow {
                seq: 42,
                actor_id: Some(Uuid::nil()),
                ..row()
            },
        ] {
            r.prev_hash = "ab".repeat(32);
            let whole = serde_json::json!([
                r.seq,
                r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                r.actor_id,
                r.api_token_id,
                r.actor_email,
                r.action.as_str(),
                r.resource,
                r.outcome.as_str(),
                r.ip,
                r.user_agent,
                canonical(&r.detail),
                r.prev_hash,
            ]);
            let expected = hex::encode(Sha256::digest(canonical_string(&whole).as_bytes()));
            assert_eq!(hash_of(&r), expected);
        }
    }

    #[test]
    fn action_spellings_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), *a);
        }
        assert!("auth.nope".parse::<Action>().is_err());
    }
}
