//! Repositories: plain data access over a diesel connection. No authorization happens here.

pub mod audit;
pub mod events;
pub mod history;
pub mod leases;
pub mod monitoring;
pub mod outbox;
pub mod runs;
pub mod runs_batch;
pub mod users;
pub mod workflows;
