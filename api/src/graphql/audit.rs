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
pub enum AuditOutcome {
    Success,
    Failure,
    Denied,
}

/// Who acted: a user (when known) by id and email.
#[derive(SimpleObject)]
pub struct AuditActor {
    pub id: Option<ID>,
    pub email: Option<String>,
}

/// One security event. `hash` covers its content and the previous event's hash.
pub struct AuditEvent(pub AuditRow);

#[Object]
impl AuditEvent {
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn actor(&self) -> Option<AuditActor> {
        let r = &self.0;
        (r.actor_id.is_some() || r.actor_email.is_some()).then(|| AuditActor {
            id: r.actor_id.map(|id| ID(id.to_string())),
            email: r.actor_email.clone(),
        })
    }
    async fn api_token_id(&self) -> Option<ID> {
        self.0.api_token_id.map(|id| ID(id.to_string()))
    }
    /// The dotted action name, e.g. `run.trigger`.
    async fn action(&self) -> &str {
        self.0.action.as_str()
    }
    async fn resource(&self) -> &str {
        &self.0.resource
    }
    async fn outcome(&self) -> AuditOutcome {
        self.0.outcome.into()
    }
    async fn ip(&self) -> Option<&str> {
        self.0.ip.as_deref()
    }
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }
    async fn detail(&self) -> Json<serde_json::Value> {
        Json(self.0.detail.clone())
    }
    async fn hash(&self) -> &str {
        &self.0.hash
    }
}

/// The result of recomputing every hash of the chain in order.
#[derive(SimpleObject)]
pub struct AuditChainReport {
    pub ok: bool,
    pub checked: i64,
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
