//! The evidence a chaos failure carries about a run: its row, tasks, events, side-effect lines
//! and the log lines of every process that name it.

use super::checks::Inputs;
use super::excerpt;

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
