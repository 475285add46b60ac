//! Runs: statuses, run events, and the service that triggers and reads runs.

pub mod eta;
pub mod events;
pub mod progress;
pub mod service;
pub mod status;
pub mod stream;

pub use status::{RunStatus, TaskStatus};
