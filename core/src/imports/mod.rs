//! Importing tasks from a legacy scheduler: sources (a JSON export, a crontab) parsed into
//! legacy tasks, and legacy tasks planned as workflows. Parsing and planning are pure
//! code; the import service (`service`, `phases`, `verify`) decides what to write.

pub mod crontab;
pub mod json;
pub mod model;
mod names;
pub mod phases;
pub mod plan;
pub mod service;
pub mod stored;
pub mod verify;

#[cfg(test)]
mod tests_crontab;
#[cfg(test)]
mod tests_json;
#[cfg(test)]
mod tests_plan;

pub use model::{ImportFormat, LegacyTask, Parsed, Planned, PlannedWorkflow, Problem};

/// Largest source accepted, in bytes.
pub const MAX_CONTENT_BYTES: usize = 16 * 1024 * 1024;
/// Most tasks (JSON records, crontab entries) one source may hold.
pub const MAX_TASKS: usize = 50_000;

/// Parses `content` in `format` (a crontab's positions are labelled `crontab:<line>`).
/// A source over [`MAX_CONTENT_BYTES`] or [`MAX_TASKS`] yields a single problem at `content`.
pub fn parse(format: ImportFormat, content: &str) -> Parsed {
    if content.len() > MAX_CONTENT_BYTES {
        return Parsed {
            tasks: Vec::new(),
            problems: vec![Problem {
                position: "content".into(),
                reason: format!(
                    "the source is {} bytes; at most {MAX_CONTENT_BYTES} (16 MiB) are accepted: \
                     split it into several imports",
                    content.len()
                ),
                legacy_id: None,
            }],
        };
    }
    match format {
        ImportFormat::Json => json::parse_json(content),
        ImportFormat::Crontab => crontab::parse_crontab(content, "crontab"),
    }
}

/// The problem for a source holding `n` > [`MAX_TASKS`] tasks.
pub(crate) fn too_many_tasks(n: usize) -> Problem {
    Problem {
        position: "content".into(),
        reason: format!(
            "the source holds {n} tasks; at most {MAX_TASKS} are accepted: split it into \
             several imports"
        ),
        legacy_id: None,
    }
}

/// An environment variable name a step accepts: `[A-Za-z_][A-Za-z0-9_]*`, at most 128
/// characters, not starting with the reserved `TMS_`.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 128;
    if !ok {
        Err("names must match [A-Za-z_][A-Za-z0-9_]* (at most 128 characters)".into())
    } else if name.starts_with("TMS_") {
        Err("the TMS_ prefix is reserved".into())
    } else {
        Ok(())
    }
}
