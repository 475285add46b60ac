//! A user account as the rest of the system sees it: never with its password hash.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::repo::users::UserRow;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            disabled: row.disabled,
            created_at: row.created_at,
        }
    }
}
