//! Runs started by a workflow's schedule: one per tick, through the same path as manual
//! triggers (run, tasks, first event, outbox row and audit row in one transaction), committed
//! only while the scheduler still holds the leader lease at the epoch it fires under.

use chrono::{DateTime, Utc};
use diesel::Connection;
use uuid::Uuid;

use crate::audit::{Action, AuditEntry};
use crate::auth::RequestMeta;
use crate::error::{Error, Result};
use crate::repo;
use crate::runs::service::{Origin, RunService, create_run};
use crate::runs::{Run, RunTrigger};
use crate::schedules::CronSchedule;

/// What one attempt to fire a workflow's schedule did.
#[derive(Debug)]
pub enum FireOutcome {
    /// A run was created for `tick`; `missed` earlier due ticks were passed over (fires missed
    /// while no scheduler ran are recorded once, in this run, not replayed).
    Fired {
        run: Box<Run>,
        tick: DateTime<Utc>,
        missed: u64,
    },
    /// Nothing is due (or the schedule is gone, disabled, or its workflow archived).
    NotDue,
    /// A run already holds the tick: marked handled, nothing created.
    AlreadyFired,
    /// The lease moved on: this scheduler is no longer the leader and wrote nothing.
    Fenced,
}

impl RunService {
    /// Fires the workflow's latest due tick, if any, as the scheduler `holder` at `epoch`.
    pub async fn fire_scheduled(
        &self,
        workflow_id: Uuid,
        holder: &str,
        epoch: i64,
    ) -> Result<FireOutcome> {
        let est = self.est.clone();
        let holder = holder.to_string();
        let (outcome, event) = self
            .db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    // First, so a takeover waits for this transaction (and sees its effects).
                    if !repo::schedules::holds_epoch(conn, &holder, epoch)? {
                        return Ok((FireOutcome::Fenced, None));
                    }
                    let Some(wf) = repo::workflows::find_for_update(conn, workflow_id)? else {
                        return Ok((FireOutcome::NotDue, None));
                    };
                    let schedule = match wf.schedule() {
                        Some(s) if s.enabled && wf.archived_at.is_none() => s,
                        _ => return Ok((FireOutcome::NotDue, None)),
                    };
                    let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)
                        .map_err(|e| Error::Internal(format!("stored schedule unreadable: {e}")))?;
                    let now = repo::schedules::db_now(conn)?;
                    let Some(due) = cron.due(schedule.fired_through, now) else {
                        return Ok((FireOutcome::NotDue, None));
                    };
                    let origin = Origin {
                        triggered_by: None,
                        trigger: RunTrigger::Schedule,
                        scheduled_for: Some(due.tick),
                    };
                    let message = match due.missed {
                        0 => format!("scheduled for {}", due.tick.to_rfc3339()),
                        n => format!(
                            "scheduled for {} ({n} earlier ticks missed)",
                            due.tick.to_rfc3339()
                        ),
                    };
                    let inputs = serde_json::json!({});
                    let entry = |run_id: Uuid| {
                        let detail = serde_json::json!({
                            "workflowId": wf.id,
                            "version": wf.current_version,
                            "trigger": RunTrigger::Schedule.as_str(),
                            "scheduledFor": due.tick,
                            "missedTicks": due.missed,
                        });
                        AuditEntry::anonymous(
                            Action::RunTrigger,
                            format!("run:{run_id}"),
                            &RequestMeta::default(),
                        )
                        .detail(detail)
                    };
                    // A savepoint: a tick some other run holds leaves the rest of the work intact.
                    let created = conn.transaction(|c| {
                        create_run(
                            c,
                            &est,
                            &origin,
                            &wf,
                            wf.current_version,
                            None,
                            &inputs,
                            None,
                            false,
                            Some(message),
                            entry,
                        )
                    });
                    repo::schedules::advance(conn, workflow_id, due.tick)?;
                    let (run, ev) = match created {
                        Ok(v) => v,
                        Err(Error::Duplicate(_)) => return Ok((FireOutcome::AlreadyFired, None)),
                        Err(e) => return Err(e),
                    };
                    let outcome = FireOutcome::Fired {
                        run: Box::new(run.into()),
                        tick: due.tick,
                        missed: due.missed,
                    };
                    Ok((outcome, Some(ev)))
                })
            })
            .await?;
        if let Some(ev) = event {
            self.relay.poke();
            self.bus.publish(&[ev]).await;
        }
        Ok(outcome)
    }
}
