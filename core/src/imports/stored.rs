//! The import states as stored: batch status, what a batch did to a workflow, and the format.

use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use serde::{Deserialize, Serialize};

use crate::db::schema::sql_types::{PgImportAction, PgImportBatchStatus, PgImportFormat};
use crate::runs::status::state_enum;

state_enum!(StoredFormat as PgImportFormat {
    Json => "json",
    Crontab => "crontab",
});

state_enum!(BatchStatus as PgImportBatchStatus {
    Applied => "applied",
    RolledBack => "rolled_back",
});

state_enum!(ImportAction as PgImportAction {
    Created => "created",
    Updated => "updated",
});

impl From<super::ImportFormat> for StoredFormat {
    fn from(f: super::ImportFormat) -> Self {
        match f {
            super::ImportFormat::Json => StoredFormat::Json,
            super::ImportFormat::Crontab => StoredFormat::Crontab,
        }
    }
}

impl From<StoredFormat> for super::ImportFormat {
    fn from(f: StoredFormat) -> Self {
        match f {
            StoredFormat::Json => super::ImportFormat::Json,
            StoredFormat::Crontab => super::ImportFormat::Crontab,
        }
    }
}
