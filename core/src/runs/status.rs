//! The run and task state machines' vocabularies, and the kinds of run events. Each is a
//! Postgres enum type too (`db::schema::sql_types`): a value either side does not know is an
//! error when read, never a guess.

use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use serde::{Deserialize, Serialize};

use crate::db::schema::sql_types::{
    PgEventKind, PgEventStatus, PgRunStatus, PgRunTrigger, PgTaskStatus,
};

macro_rules! state_enum {
    ($name:ident as $sql:ty { $($variant:ident => $s:literal),+ $(,)? }) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
        )]
        #[diesel(sql_type = $sql)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The spelling stored in Postgres and carried on the bus.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($s => Ok($name::$variant),)+ other => Err(format!("unknown {} `{other}`", stringify!($name))) }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }

        impl ToSql<$sql, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                use std::io::Write;
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<$sql, Pg> for $name {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                Ok(std::str::from_utf8(value.as_bytes())?.parse::<$name>()?)
            }
        }
    };
}

/// Shared with the audit log's action and outcome enums.
pub(crate) use state_enum;

state_enum!(RunStatus as PgRunStatus {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
    TimedOut => "timed_out",
});

// How a run was started: by a caller, by its workflow's schedule, or by `retryRun` (a new run
// retrying another; a retry from the failed step keeps the run's own trigger).
state_enum!(RunTrigger as PgRunTrigger {
    Manual => "manual",
    Schedule => "schedule",
    Retry => "retry",
});

state_enum!(TaskStatus as PgTaskStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cached => "cached",
    Skipped => "skipped",
    Cancelled => "cancelled",
});

state_enum!(EventKind as PgEventKind {
    Run => "run",
    Task => "task",
    Progress => "progress",
    Snapshot => "snapshot",
});

state_enum!(EventStatus as PgEventStatus {
    Queued => "queued",
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cached => "cached",
    Skipped => "skipped",
    Cancelled => "cancelled",
    TimedOut => "timed_out",
});

impl RunStatus {
    /// States in which a worker may still change the run.
    pub const UNFINISHED: [RunStatus; 2] = [RunStatus::Queued, RunStatus::Running];

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }
    /// Whether dependents may use this task's output.
    pub fn is_success(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Cached)
    }
}

impl From<RunStatus> for EventStatus {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Queued => EventStatus::Queued,
            RunStatus::Running => EventStatus::Running,
            RunStatus::Succeeded => EventStatus::Succeeded,
            RunStatus::Failed => EventStatus::Failed,
            RunStatus::Cancelled => EventStatus::Cancelled,
            RunStatus::TimedOut => EventStatus::TimedOut,
        }
    }
}

impl From<TaskStatus> for EventStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => EventStatus::Pending,
            TaskStatus::Running => EventStatus::Running,
            TaskStatus::Succeeded => EventStatus::Succeeded,
            TaskStatus::Failed => EventStatus::Failed,
            TaskStatus::Cached => EventStatus::Cached,
            TaskStatus::Skipped => EventStatus::Skipped,
            TaskStatus::Cancelled => EventStatus::Cancelled,
        }
    }
}

impl EventStatus {
    /// The run status this names, if it is one (run and snapshot events carry run statuses).
    pub fn as_run_status(self) -> Option<RunStatus> {
        self.as_str().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_unknown_values_are_refused() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
            assert_eq!(EventStatus::from(*s).as_run_status(), Some(*s));
        }
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(*s));
            assert_eq!(EventStatus::from(*s).as_str(), s.as_str());
        }
        for t in RunTrigger::ALL {
            assert_eq!(t.as_str().parse::<RunTrigger>(), Ok(*t));
        }
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(*k));
        }
        assert!("Succeeded".parse::<RunStatus>().is_err());
        assert!("done".parse::<TaskStatus>().is_err());
        assert_eq!(EventStatus::Skipped.as_run_status(), None);
    }
}
