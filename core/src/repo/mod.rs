//! Repositories: plain data access over a diesel connection. No authorization happens here.

pub mod api_tokens;
pub mod artifacts;
pub mod audit;
pub mod events;
pub mod history;
pub mod imports;
pub mod leases;
pub mod limits;
pub mod login_throttle;
pub mod logs;
pub mod monitoring;
pub mod outbox;
pub mod refresh_tokens;
pub mod run_create;
pub mod run_create_many;
pub mod run_end;
pub mod run_start;
pub mod run_state;
pub mod runs;
pub mod runs_batch;
pub mod schedules;
pub mod sso;
pub mod task_transition;
pub mod task_transitions;
pub mod users;
pub mod workflows;
