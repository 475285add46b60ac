//! Taking a run's lease at a delivery, and resuming the run in the same trip to the database.

use std::sync::Arc;

use diesel::{Connection, PgConnection};
use uuid::Uuid;

use super::{Claim, ClaimPolicy, Claimed, Execution, Resumed, resume};
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::RunVersion;
use crate::repo;
use crate::repo::runs::TaskRow;
use crate::runs::eta::Estimator;
use crate::runs::events::run_changed;
use crate::runs::limits::Admission;
use crate::runs::{RunEvent, RunStatus};

/// What one trip to the database made of a delivery: the admission, whether the run's
/// workflow caps concurrent runs, and the resumed run when that was done too.
type Taken = (
    Admission,
    bool,
    Option<(Resumed, Vec<TaskRow>, Vec<RunEvent>)>,
);

impl Execution {
    /// Takes (or re-takes) the run's lease for `owner`, unless the run ended or another worker
    /// holds a live lease (a duplicate delivery, acknowledged without effect), its workflow's
    /// limits make it wait, or it was delivered too often (dead-lettered). `version`: the
    /// workflow version the run's job says it is pinned to, if it says.
    pub async fn claim(
        db: Db,
        bus: EventBus,
        est: Arc<Estimator>,
        run_id: Uuid,
        owner: String,
        policy: ClaimPolicy,
        version: Option<RunVersion>,
    ) -> Result<Claimed> {
        let (o, secs) = (owner.clone(), policy.lease.as_secs() as i64);
        let (est2, max) = (est.clone(), policy.max_deliveries);
        let merged = db
            .run(move |c| take(c, &est2, run_id, &o, secs, max, version))
            .await;
        let (admission, capped, resumed) = match merged {
            Ok(v) => v,
            Err(e @ Error::Unavailable(_)) => return Err(e),
            // Resuming failed and took the claim with it: claim alone, so that this delivery
            // still counts towards dead-lettering; the runner's own resume then meets the error
            // and hands the run back.
            Err(e) => {
                tracing::warn!(%run_id, error = %e, "resuming in the claim's transaction failed; claiming alone");
                let o = owner.clone();
                let admission = db
                    .run(move |c| {
                        c.transaction::<_, Error, _>(|c| {
                            crate::runs::limits::admit(c, run_id, &o, secs)
                        })
                    })
                    .await?;
                (admission, true, None)
            }
        };
        let run = match admission {
            Admission::Admitted(run) => run,
            Admission::Gone => return Ok(Claimed::Gone),
            Admission::Waiting(until) => return Ok(Claimed::Waiting(until)),
        };
        let claim = Claim::of(&run, capped);
        let exec = Self {
            db,
            bus,
            est,
            run_id,
            owner,
            claim: Arc::new(claim.clone()),
            tasks: Arc::default(),
        };
        if run.deliveries > policy.max_deliveries {
            exec.dead_letter(run.deliveries).await?;
            return Ok(Claimed::DeadLettered);
        }
        let resumed = match resumed {
            Some((resumed, rows, events)) => {
                *exec.tasks.lock().await = rows;
                exec.bus.publish(&events).await;
                Some(Box::new(resumed))
            }
            None => None,
        };
        Ok(Claimed::Run(exec, claim, resumed))
    }
}

/// The claim and the resume in one blocking call. A queued run of a workflow without limits
/// (most runs) whose job names its version is claimed and started by one statement
/// ([`take_pinned`]); without the version, by one statement, a read of its tasks and another
/// statement fenced by the lease, with no transaction: three round trips. Any other run is
/// admitted and resumed in one transaction, which needs no lease re-check (the lease was taken a
/// statement before).
#[allow(clippy::too_many_arguments)]
fn take(
    c: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    owner: &str,
    secs: i64,
    max: i32,
    version: Option<RunVersion>,
) -> Result<Taken> {
    if let Some(v) = version {
        match take_pinned(c, est, run_id, owner, secs, max, v) {
            Ok(Some(taken)) => return Ok(taken),
            Ok(None) => {}
            Err(e @ Error::Unavailable(_)) => return Err(e),
            // Nothing was written (one statement): claimed as if the job did not say.
            Err(e) => tracing::warn!(%run_id, error = %e, "starting the run with its claim failed"),
        }
    }
    if let Some(run) = repo::run_start::claim_unlimited(c, run_id, owner, secs)? {
        let claim = Claim::of(&run, false);
        // Delivered too often: not resumed; the caller dead-letters it.
        let resumed = if run.deliveries > max {
            None
        } else {
            match resume::resume_in(c, est, run_id, &claim, owner) {
                Ok(r) => Some(r),
                Err(e @ Error::Unavailable(_)) => return Err(e),
                // The claim stands (it was its own statement): the runner's own resume meets
                // the error and hands the run back.
                Err(e) => {
                    tracing::warn!(%run_id, error = %e, "starting the claimed run failed");
                    None
                }
            }
        };
        return Ok((Admission::Admitted(Box::new(run)), false, resumed));
    }
    c.transaction::<_, Error, _>(|c| {
        let admission = crate::runs::limits::admit(c, run_id, owner, secs)?;
        let resumed = match &admission {
            Admission::Admitted(run) if run.deliveries <= max => Some(resume::resume_in(
                c,
                est,
                run_id,
                &Claim::of(run, true),
                owner,
            )?),
            _ => None,
        };
        Ok((admission, true, resumed))
    })
}

/// A queued run of a workflow without limits, pinned to `v`, claimed and started in one
/// statement. Its tasks need no read: a queued run's are as its creation wrote them (every step
/// of its version pending, never attempted; only a worker's claim moves a run out of `queued`),
/// and the version's steps are in memory after its first run. `None` (nothing written) when the
/// run is not such a run: the caller claims it the general way.
#[allow(clippy::too_many_arguments)]
fn take_pinned(
    c: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    owner: &str,
    secs: i64,
    max: i32,
    v: RunVersion,
) -> Result<Option<Taken>> {
    let spec = super::specs::version(c, v.workflow_id, v.version)?;
    let rows: Vec<TaskRow> = (0..)
        .zip(&spec.steps)
        .map(|(i, s)| TaskRow::pending(run_id, i, s.name.clone(), s.depends_on.clone()))
        .collect();
    let e = est.estimate_of(c, v.workflow_id, &rows)?;
    let mut ev = run_changed(RunStatus::Running, None);
    (ev.percent, ev.eta_seconds) = (e.percent, e.eta_seconds);
    let started = repo::run_start::claim_and_start(
        c,
        run_id,
        owner,
        secs,
        v.workflow_id,
        v.version,
        max,
        &ev,
    )?;
    let Some((run, event)) = started else {
        return Ok(None);
    };
    let resumed = Resumed {
        spec,
        tasks: rows.iter().map(resume::resumed_task).collect(),
        inputs: run.inputs.clone(),
        no_cache: run.no_cache,
    };
    let started = Some((resumed, rows, vec![event.into()]));
    Ok(Some((Admission::Admitted(Box::new(run)), false, started)))
}
