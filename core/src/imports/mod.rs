//! Importing tasks from a legacy scheduler: sources (a JSON export, a crontab) parsed into
//! legacy tasks, and legacy tasks planned as workflows. Pure code: nothing here touches the
//! database; the import service (`imports::service`) decides what to write.

pub mod model;
pub mod phases;
pub mod service;
pub mod verify;
pub mod stored;

pub use model::{ImportFormat, LegacyTask, Parsed, Planned, PlannedWorkflow, Problem};
