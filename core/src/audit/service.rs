//! Reading and verifying the audit log, and recording refused access.

use uuid::Uuid;

use crate::audit::{Action, AuditEntry, GENESIS, Outcome, append, hash_of};
use crate::auth::{Permission, Principal, rbac};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::audit::AuditRow;

/// Rows read per query while verifying, so a long log is never held in memory at once.
const VERIFY_PAGE: i64 = 1000;

/// What `verify_chain` found: `first_broken_seq` is the first row whose hash or link is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    pub checked: i64,
    pub first_broken_seq: Option<i64>,
}

/// As `rbac::require`, and an authenticated caller who is refused leaves an `access.denied`
/// row (in its own transaction: there is no change to join).
pub async fn require<'a>(
    db: &Db,
    who: Option<&'a Principal>,
    permission: Permission,
) -> Result<&'a Principal> {
    match rbac::require(who, permission) {
        Err(Error::Forbidden(p)) => {
            if let Some(caller) = who {
                let entry = AuditEntry::by(caller, Action::AccessDenied, permission.as_str())
                    .outcome(Outcome::Denied)
                    .detail(serde_json::json!({ "permission": permission.as_str() }));
                db.run(move |c| {
                    use diesel::Connection;
                    c.transaction::<_, Error, _>(|c| append(c, entry))
                })
                .await?;
            }
            Err(Error::Forbidden(p))
        }
        other => other,
    }
}

#[derive(Clone)]
pub struct AuditService {
    db: Db,
}

impl AuditService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// `require` for callers outside core's services (the api's early checks).
    pub async fn require<'a>(
        &self,
        who: Option<&'a Principal>,
        permission: Permission,
    ) -> Result<&'a Principal> {
        require(&self.db, who, permission).await
    }

    /// Newest first, before the row `before`; `action` is its dotted name (`run.trigger`).
    pub async fn list(
        &self,
        who: Option<&Principal>,
        before: Option<i64>,
        limit: i64,
        action: Option<&str>,
        actor: Option<Uuid>,
    ) -> Result<Vec<AuditRow>> {
        require(&self.db, who, Permission::ReadAudit).await?;
        let action = action
            .map(|a| a.parse::<Action>())
            .transpose()
            .map_err(|_| Error::field("action", "is not an audit action"))?;
        self.db
            .run(move |c| repo::audit::list(c, before, limit, action, actor))
            .await
    }

    pub async fn verify(&self, who: Option<&Principal>) -> Result<ChainReport> {
        require(&self.db, who, Permission::ReadAudit).await?;
        self.db.run(verify_chain).await
    }
}

/// Recomputes every row's hash in seq order and checks each links to the row before it.
pub fn verify_chain(conn: &mut diesel::PgConnection) -> Result<ChainReport> {
    let mut prev = GENESIS.to_string();
    let mut last_seq = 0;
    let mut checked = 0;
    loop {
        let page = repo::audit::chain_page(conn, last_seq, VERIFY_PAGE)?;
        if page.is_empty() {
            return Ok(ChainReport {
                ok: true,
                checked,
                first_broken_seq: None,
            });
        }
        for row in page {
            checked += 1;
            if row.prev_hash != prev || hash_of(&row) != row.hash {
                return Ok(ChainReport {
                    ok: false,
                    checked,
                    first_broken_seq: Some(row.seq),
                });
            }
            last_seq = row.seq;
            prev = row.hash;
        }
    }
}
