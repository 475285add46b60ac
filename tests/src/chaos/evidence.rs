//! The evidence a chaos failure carries about a run: its row, tasks, events, side-effect lines
//! and the log lines of every process that name it.

use chrono::{DateTime, Utc};

use super::checks::Inputs;
use super::excerpt;
use super::load::Trigger;

/// Everything known about run `id`: its row, tasks, events, effect lines, log lines naming it.
pub fn evidence(inp: &Inputs, id: &str) -> String {
    let snap = inp.snapshot;
    let mut out = match snap.runs.get(id) {
        Some(r) => format!(
            "  run {id} key {} status {} deliveries {} last_seq {} lease_owner '{}' error '{}'",
            r.key, r.status, r.deliveries, r.last_seq, r.lease_owner, r.error
        ),
        None => format!("  run {id}: no row in runs"),
    };
    let tasks: Vec<String> = snap
        .tasks
        .get(id)
        .into_iter()
        .flatten()
        .map(|t| {
            let fx = inp.effects.attempts(id, &t.name);
            let err = if t.error.is_empty() {
                String::new()
            } else {
                format!(" error '{}'", t.error)
            };
            format!("{} {}#{}{err} effects{fx:?}", t.name, t.status, t.attempt)
        })
        .collect();
    out += &format!("\n    tasks: {}", tasks.join(", "));
    let events: Vec<String> = snap
        .events
        .get(id)
        .into_iter()
        .flatten()
        .map(|e| e.brief())
        .collect();
    let skip = events.len().saturating_sub(30);
    out += &format!(
        "\n    events{}: {}",
        if skip > 0 {
            format!(" (last 30 of {})", events.len())
        } else {
            String::new()
        },
        events[skip..].join(" | ")
    );
    for (label, text) in inp.logs {
        let lines = excerpt(text, id, 6);
        if !lines.is_empty() {
            out += &format!("\n    {label} log:\n      {}", lines.join("\n      "));
        }
    }
    out
}

/// For the first of `triggers` on each api: that api's warnings and errors logged while it was
/// answering (up to 8 lines).
pub fn trigger_evidence(inp: &Inputs, triggers: &[&Trigger]) -> String {
    let mut out = Vec::new();
    for (port, label) in inp.apis {
        let Some(t) = triggers.iter().find(|t| t.api_port == *port) else {
            continue;
        };
        let Some((_, text)) = inp.logs.iter().find(|(l, _)| l == label) else {
            continue;
        };
        let to = t.wall + chrono::Duration::from_std(t.took).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| logged_at(l).is_some_and(|at| at >= t.wall && at <= to))
            .flat_map(|l| excerpt(l, "", 1))
            .take(8)
            .collect();
        out.push(format!(
            "  {label} (:{port}) warnings and errors while answering key {}: {}",
            t.key,
            if lines.is_empty() {
                "none".to_string()
            } else {
                format!("\n    {}", lines.join("\n    "))
            }
        ));
    }
    out.join("\n")
}

/// The timestamp a log line starts with.
fn logged_at(line: &str) -> Option<DateTime<Utc>> {
    let first = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
