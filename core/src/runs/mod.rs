//! Runs: statuses, run events, and the service that triggers and reads runs.

pub mod events;
pub mod progress;
pub mod service;
pub mod status;

pub use status::{RunStatus, TaskStatus};
