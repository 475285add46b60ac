//! Setting a workflow's schedule: from its input on create and update, and turning it on or
//! off with `setScheduleEnabled`.

use chrono::{DateTime, Utc};
use diesel::Connection;
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal};
use crate::error::{Error, FieldError, Result};
use crate::repo;
use crate::schedules::{DEFAULT_TIMEZONE, Schedule};
use crate::workflows::Workflow;
use crate::workflows::service::{WorkflowService, resource};
use crate::workflows::spec::ScheduleInput;

/// The schedule to store for `input`, given the one stored before (`old`), at `now`. Ticks
/// before `now` are never fired for a schedule that is new, changed or re-enabled; an edit that
/// leaves an enabled schedule as it was keeps its place.
pub(crate) fn stored(
    input: Option<&ScheduleInput>,
    old: Option<&Schedule>,
    now: DateTime<Utc>,
) -> Option<Schedule> {
    let input = input?;
    let mut new = Schedule {
        cron: input.cron.trim().to_string(),
        timezone: input
            .timezone
            .clone()
            .unwrap_or_else(|| DEFAULT_TIMEZONE.to_string()),
        enabled: input.enabled.unwrap_or(true),
        fired_through: now,
    };
    if let Some(old) = old
        && old.enabled
        && new.enabled
        && old.cron == new.cron
        && old.timezone == new.timezone
    {
        new.fired_through = old.fired_through;
    }
    Some(new)
}

/// How the audit detail describes a schedule.
pub(crate) fn detail(schedule: Option<&Schedule>) -> serde_json::Value {
    match schedule {
        None => serde_json::Value::Null,
        Some(s) => serde_json::json!({
            "cron": s.cron, "timezone": s.timezone, "enabled": s.enabled,
        }),
    }
}

impl WorkflowService {
    /// Turns the workflow's schedule on or off. Turning it on never fires ticks that passed
    /// while it was off. Setting the state it already has changes (and records) nothing.
    pub async fn set_schedule_enabled(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        enabled: bool,
    ) -> Result<Workflow> {
        let who = audit::require(&self.db, who, Permission::WriteWorkflows)
            .await?
            .clone();
        self.db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let wf = repo::workflows::find_for_update(conn, id)?
                        .ok_or(Error::NotFound("workflow"))?;
                    wf.ensure_active()?;
                    let Some(mut schedule) = wf.schedule() else {
                        return Err(Error::Validation(vec![FieldError::new(
                            "workflowId",
                            "the workflow has no schedule; set one with updateWorkflow",
                        )]));
                    };
                    if schedule.enabled == enabled {
                        return Ok(wf);
                    }
                    schedule.enabled = enabled;
                    if enabled {
                        schedule.fired_through = repo::schedules::db_now(conn)?;
                    }
                    let wf = repo::workflows::set_schedule(conn, id, Some(&schedule))?;
                    // DESIGN lists no schedule actions: this is an update of the workflow.
                    let entry = AuditEntry::by(&who, Action::WorkflowUpdate, resource(id))
                        .detail(serde_json::json!({ "schedule_enabled": enabled }));
                    audit::append(conn, entry)?;
                    Ok(wf)
                })
            })
            .await
            .map(Workflow::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cron: &str, enabled: Option<bool>) -> ScheduleInput {
        ScheduleInput {
            cron: cron.into(),
            timezone: None,
            enabled,
        }
    }

    #[test]
    fn unchanged_enabled_schedules_keep_their_place_others_start_now() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(stored(None, None, now), None);
        let fresh = stored(Some(&input("*/5 * * * *", None)), None, now).unwrap();
        assert_eq!(fresh.timezone, "UTC");
        assert!(fresh.enabled);
        assert_eq!(fresh.fired_through, now);
        let old = Schedule {
            fired_through: t0,
            ..fresh.clone()
        };
        let same = stored(Some(&input("*/5 * * * *", Some(true))), Some(&old), now).unwrap();
        assert_eq!(same.fired_through, t0);
        let changed = stored(Some(&input("*/6 * * * *", None)), Some(&old), now).unwrap();
        assert_eq!(changed.fired_through, now);
        let off = Schedule {
            enabled: false,
            ..old
        };
        let back_on = stored(Some(&input("*/5 * * * *", None)), Some(&off), now).unwrap();
        assert_eq!(back_on.fired_through, now);
    }
}
