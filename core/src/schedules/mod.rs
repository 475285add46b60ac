//! Cron schedules of workflows: the expressions, the stored schedule, and the scheduler that
//! fires them from whichever process holds the leader lease.

pub mod expr;
pub mod scheduler;

use chrono::{DateTime, Utc};

pub use expr::{CronSchedule, DEFAULT_TIMEZONE, Due};
pub use scheduler::{Scheduler, SchedulerConfig};

/// A workflow's schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// As submitted (five or six fields).
    pub cron: String,
    /// IANA name.
    pub timezone: String,
    pub enabled: bool,
    /// Ticks up to this instant are handled: fired, or passed over when the schedule was
    /// enabled or changed (a schedule never fires for a time before it was set).
    pub fired_through: DateTime<Utc>,
}

impl Schedule {
    /// When it fires next, seen at `now`; `None` while disabled.
    pub fn next_fire_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.enabled {
            return None;
        }
        CronSchedule::parse(&self.cron, &self.timezone)
            .ok()?
            .next_after(self.fired_through.max(now))
    }
}
