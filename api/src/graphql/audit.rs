//! GraphQL types and root fields for the audit log (auditors and admins only).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::repo::audit::AuditRow;

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::ids::{decode_cursor, encode_cursor, page_size, uuid};
use crate::state::Services;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::audit::Outcome")]
/// How a recorded action ended.
pub enum AuditOutcome {
    /// It was carried out.
    Success,
    /// It was attempted and failed (e.g. wrong password, reused refresh token).
    Failure,
    /// The caller's role did not allow it.
    Denied,
}

/// Who acted: a user (when known) by id and email.
#[derive(SimpleObject)]
pub struct AuditActor {
    /// The user's id; null when no account matched (e.g. a sign-in with an unknown email).
    pub id: Option<ID>,
    /// The email the actor used or had; null when unknown.
    pub email: Option<String>,
}

pub struct AuditEvent(pub AuditRow);

/// One security event. `hash` covers its content and the previous event's hash.
#[Object]
impl AuditEvent {
    /// Position in the chain, from 1, without gaps.
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// Who acted; null for anonymous or system events.
    async fn actor(&self) -> Option<AuditActor> {
        let r = &self.0;
        (r.actor_id.is_some() || r.actor_email.is_some()).then(|| AuditActor {
            id: r.actor_id.map(|id| ID(id.to_string())),
            email: r.actor_email.clone(),
        })
    }
    /// The API token the actor used; null when it was not an API token.
    async fn api_token_id(&self) -> Option<ID> {
        self.0.api_token_id.map(|id| ID(id.to_string()))
    }
    /// The dotted action name, e.g. `run.trigger`.
    async fn action(&self) -> &str {
        self.0.action.as_str()
    }
    /// What it acted on, e.g. `workflow:<id>` or `user:<id>`.
    async fn resource(&self) -> &str {
        &self.0.resource
    }
    /// How it ended.
    async fn outcome(&self) -> AuditOutcome {
        self.0.outcome.into()
    }
    /// The client's address (the peer's, never a forwarding header); null when unknown.
    async fn ip(&self) -> Option<&str> {
        self.0.ip.as_deref()
    }
    /// The client's `User-Agent` (at most 512 characters); null when it sent none.
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }
    /// Action-specific facts as a JSON object (never a token or a secret).
    async fn detail(&self) -> Json<serde_json::Value> {
        Json(self.0.detail.clone())
    }
    /// Hex SHA-256 over this event's content and the previous event's hash.
    async fn hash(&self) -> &str {
        &self.0.hash
    }
}

/// The result of recomputing every hash of the chain in order.
#[derive(SimpleObject)]
pub struct AuditChainReport {
    /// Whether every link holds.
    pub ok: bool,
    /// Events checked.
    pub checked: i64,
    /// The first event whose hash does not match; null when `ok`.
    pub first_broken_seq: Option<i64>,
}

pub type AuditEventConnection = Connection<String, AuditEvent>;

/// `Query.auditLog`: newest first, optionally of one action and one actor.
pub async fn audit_log(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    action: Option<String>,
    actor_id: Option<ID>,
) -> Result<AuditEventConnection> {
    let svc = ctx.data_unchecked::<Services>();
    let limit = page_size(first).gql()?;
    let before = after
        .map(|c| {
            decode_cursor("audit", &c)?
                .parse::<i64>()
                .map_err(|_| tms_core::Error::field("after", "is not a cursor"))
        })
        .transpose()
        .gql()?;
    let actor = actor_id.map(|a| uuid(&a, "actorId")).transpose().gql()?;
    let mut rows = svc
        .audit
        .list(
            caller(ctx).gql()?,
            before,
            limit + 1,
            action.as_deref(),
            actor,
        )
        .await
        .gql()?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut conn = Connection::new(before.is_some(), has_next);
    conn.edges.extend(
        rows.into_iter()
            .map(|r| Edge::new(encode_cursor("audit", &r.seq.to_string()), AuditEvent(r))),
    );
    Ok(conn)
}

/// `Query.verifyAuditChain`.
pub async fn verify_chain(ctx: &Context<'_>) -> Result<AuditChainReport> {
    let svc = ctx.data_unchecked::<Services>();
    let r = svc.audit.verify(caller(ctx).gql()?).await.gql()?;
    Ok(AuditChainReport {
        ok: r.ok,
        checked: r.checked,
        first_broken_seq: r.first_broken_seq,
    })
}
