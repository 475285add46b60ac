//! Runs: statuses, run events, and the service that triggers and reads runs.

pub mod eta;
pub mod events;
pub mod model;
pub mod progress;
pub mod reads;
pub mod service;
pub mod status;
pub mod stream;

pub use model::{Run, Task};
pub use status::{RunStatus, TaskStatus};
