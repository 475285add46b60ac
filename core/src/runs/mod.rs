//! Runs: statuses, the DAG rules, run events, the execution of a run under its lease, and the
//! service that triggers and reads runs.

pub mod dag;
pub mod eta;
pub mod events;
pub mod execution;
pub mod inputs;
pub mod limits;
pub mod logs;
pub mod model;
pub mod progress;
pub mod reads;
pub mod run_event;
pub mod scheduled;
pub mod service;
pub mod status;
pub mod stream;
pub mod trigger;
mod trigger_batch;

pub use model::{Run, Task};
pub use run_event::RunEvent;
pub use status::{EventKind, EventStatus, RunStatus, RunTrigger, TaskStatus};
