//! Workflows: the step specification, its validation, and the service that stores versions.

pub mod service;
pub mod spec;
pub mod validate;

pub use spec::{StepSpec, WorkflowInput, WorkflowSpec};
