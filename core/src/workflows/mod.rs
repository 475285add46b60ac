//! Workflows: the step specification, its validation, and the service that stores versions.

pub mod model;
pub mod schedule;
pub mod service;
pub mod spec;
pub mod validate;

pub use model::{Workflow, WorkflowVersion};
pub use spec::{RateLimit, ScheduleInput, StepSpec, WorkflowInput, WorkflowSpec};
