//! Who is calling: the authenticated principal and the role vocabulary.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Maintainer,
    Operator,
    Viewer,
    Auditor,
    Monitor,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Maintainer,
        Role::Operator,
        Role::Viewer,
        Role::Auditor,
        Role::Monitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Maintainer => "maintainer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Monitor => "monitor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// Where a request came from, as the transport saw it: recorded in the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The authenticated caller of one request, resolved from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub email: String,
    pub roles: Vec<Role>,
    /// Set when the caller authenticated with an API token: then `user_id`/`email` are the
    /// admin who created the token and `roles` is exactly the token's one role.
    pub api_token_id: Option<Uuid>,
    /// Filled in by the transport; empty when it does not know.
    pub meta: RequestMeta,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
