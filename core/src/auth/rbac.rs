//! Role-based access control: one table mapping each permission to the roles that hold it.

use crate::auth::{Principal, Role};
use crate::error::{Error, Result};

/// Everything the API can do that needs a permission. Deny by default: a capability without a
/// variant here cannot be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadSelf,
    ReadWorkflows,
    WriteWorkflows,
    ReadRuns,
    OperateRuns,
    ManageUsers,
    ReadAudit,
    ReadMonitoring,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadSelf => "read:self",
            Permission::ReadWorkflows => "read:workflows",
            Permission::WriteWorkflows => "write:workflows",
            Permission::ReadRuns => "read:runs",
            Permission::OperateRuns => "operate:runs",
            Permission::ManageUsers => "manage:users",
            Permission::ReadAudit => "read:audit",
            Permission::ReadMonitoring => "read:monitoring",
        }
    }

    /// Roles (besides `admin`, which holds every permission) granted this permission.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Permission::ReadSelf => &[Maintainer, Operator, Viewer, Auditor, Monitor],
            Permission::ReadWorkflows | Permission::ReadRuns => &[Maintainer, Operator, Viewer],
            Permission::WriteWorkflows => &[Maintainer],
            Permission::OperateRuns => &[Operator],
            Permission::ManageUsers => &[],
            Permission::ReadAudit => &[Auditor],
            Permission::ReadMonitoring => &[Monitor],
        }
    }

    /// Every permission, for tables and tests that must cover them all.
    pub const ALL: [Permission; 8] = [
        Permission::ReadSelf,
        Permission::ReadWorkflows,
        Permission::WriteWorkflows,
        Permission::ReadRuns,
        Permission::OperateRuns,
        Permission::ManageUsers,
        Permission::ReadAudit,
        Permission::ReadMonitoring,
    ];

    /// Whether `role` holds this permission: the one place the role table is read.
    pub fn granted_to(self, role: Role) -> bool {
        role == Role::Admin || self.roles().contains(&role)
    }
}

pub fn allows(principal: &Principal, permission: Permission) -> bool {
    principal.roles.iter().any(|r| permission.granted_to(*r))
}

/// Checks `permission` for an optional caller: no caller is `UNAUTHENTICATED`, a caller without
/// the permission is `FORBIDDEN`.
pub fn require(principal: Option<&Principal>, permission: Permission) -> Result<&Principal> {
    let p = principal.ok_or(Error::Unauthenticated("authentication required"))?;
    if allows(p, permission) {
        Ok(p)
    } else {
        Err(Error::Forbidden(permission.as_str().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn with(roles: &[Role]) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            email: "x@y".into(),
            roles: roles.to_vec(),
            api_token_id: None,
            meta: Default::default(),
        }
    }

    #[test]
    fn admin_holds_everything_and_viewer_cannot_write() {
        assert!(allows(&with(&[Role::Admin]), Permission::ManageUsers));
        assert!(allows(&with(&[Role::Viewer]), Permission::ReadRuns));
        assert!(!allows(&with(&[Role::Viewer]), Permission::OperateRuns));
        assert!(!allows(&with(&[]), Permission::ReadSelf));
        assert!(matches!(
            require(None, Permission::ReadRuns),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            require(Some(&with(&[Role::Monitor])), Permission::WriteWorkflows),
            Err(Error::Forbidden(_))
        ));
    }
}
