//! Per-workflow run limits: at most `maxConcurrentRuns` runs of a workflow execute at once and
//! at most `rateLimit.runs` start per `rateLimit.perSeconds`; runs over a limit wait queued, in
//! the order they were created, and the next ones are released as runs finish.

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::repo;
use crate::repo::limits::{Limits, Occupancy};
use crate::repo::runs::RunRow;
use crate::runs::RunStatus;

/// A run held back by `maxConcurrentRuns` is looked at again after this long even if no
/// finishing run wakes it (a safety net: waking is the normal path).
const RECHECK_SECONDS: i64 = 30;

/// The outcome of a worker's attempt to take a run.
#[derive(Debug)]
pub enum Admission {
    /// The lease is the caller's.
    Admitted(Box<RunRow>),
    /// Finished, or leased by another worker: a duplicate delivery.
    Gone,
    /// Over its workflow's limits: left queued, not delivered again before `until`.
    Waiting(DateTime<Utc>),
}

/// Takes the run's lease for `owner` unless its workflow's limits say it must wait, under the
/// workflow's lock (so two workers cannot both take the last slot). Call it inside a
/// transaction (the claim's, which also resumes the run).
pub fn admit(
    conn: &mut PgConnection,
    run_id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Admission> {
    let Some((workflow_id, status, limits)) = repo::limits::of_run(conn, run_id)? else {
        return Ok(Admission::Gone);
    };
    // A run already running (resumed after its worker died) holds its slot.
    if limits.any() && status == RunStatus::Queued {
        repo::limits::lock_workflow(conn, workflow_id)?;
        let window = limits.rate.map(|(_, secs)| secs).unwrap_or(1);
        let occupancy = repo::limits::occupancy(conn, workflow_id, run_id, window)?;
        if let Some(until) = wait_until(&limits, &occupancy, Utc::now()) {
            repo::limits::hold_back(conn, run_id, until)?;
            return Ok(Admission::Waiting(until));
        }
    }
    Ok(
        match repo::leases::claim(conn, run_id, owner, lease_seconds)? {
            Some(row) => Admission::Admitted(Box::new(row)),
            None => Admission::Gone,
        },
    )
}

/// When a run must wait, until when; `None` when it may start now.
pub fn wait_until(limits: &Limits, o: &Occupancy, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut until: Option<DateTime<Utc>> = None;
    if let Some(max) = limits.max_concurrent_runs
        && o.active + o.ahead >= i64::from(max)
    {
        until = Some(now + chrono::Duration::seconds(RECHECK_SECONDS));
    }
    if let Some((runs, secs)) = limits.rate
        && o.started_in_window + o.ahead >= i64::from(runs)
    {
        let freed = o
            .oldest_start_in_window
            .map(|t| t + chrono::Duration::seconds(i64::from(secs)))
            .unwrap_or(now)
            .max(now + chrono::Duration::seconds(1));
        until = Some(until.map_or(freed, |u| u.max(freed)));
    }
    until
}

/// Called in the transaction that ends a run: releases as many waiting runs of its workflow as
/// slots are free now and puts them on the queue (through the outbox). Returns how many.
pub fn wake_next(conn: &mut PgConnection, run_id: Uuid) -> Result<usize> {
    let Some((workflow_id, Some(max))) = repo::limits::max_concurrent_of_run(conn, run_id)? else {
        return Ok(0);
    };
    repo::limits::lock_workflow(conn, workflow_id)?;
    let free = i64::from(max) - repo::limits::active(conn, workflow_id)?;
    if free <= 0 {
        return Ok(0);
    }
    let ids = repo::limits::release_waiting(conn, workflow_id, free)?;
    for id in &ids {
        crate::queue::enqueue(conn, *id)?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occ(active: i64, ahead: i64, started: i64) -> Occupancy {
        Occupancy {
            active,
            ahead,
            started_in_window: started,
            oldest_start_in_window: None,
        }
    }

    #[test]
    fn concurrency_counts_running_and_older_waiting_runs() {
        let now = Utc::now();
        let l = Limits {
            max_concurrent_runs: Some(2),
            rate: None,
        };
        assert_eq!(wait_until(&l, &occ(1, 0, 0), now), None);
        assert!(wait_until(&l, &occ(2, 0, 0), now).is_some());
        // Older queued runs go first even when a slot is free.
        assert!(wait_until(&l, &occ(1, 1, 0), now).is_some());
        assert_eq!(
            wait_until(&Limits::default(), &occ(100, 100, 100), now),
            None
        );
    }

    #[test]
    fn rate_limit_waits_until_the_oldest_start_leaves_the_window() {
        let now = Utc::now();
        let l = Limits {
            max_concurrent_runs: None,
            rate: Some((3, 60)),
        };
        assert_eq!(wait_until(&l, &occ(0, 0, 2), now), None);
        let mut o = occ(0, 0, 3);
        o.oldest_start_in_window = Some(now - chrono::Duration::seconds(50));
        let until = wait_until(&l, &o, now).expect("must wait");
        assert_eq!((until - now).num_seconds(), 10);
    }
}
