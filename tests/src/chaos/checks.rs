//! What the suite asserts once triggering stopped and the runs ended: the figures it prints and
//! every failure with its evidence (run ids, rows, events, side-effect lines, log excerpts).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::db::{Effects, Snapshot};
use super::evidence::{evidence, trigger_evidence};
use super::faults::Fault;
use super::load::{Outcome, Trigger};
use super::secs;

/// The longest a `triggerRun` round trip may take, accepted or refused.
pub const TRIGGER_LIMIT: Duration = Duration::from_secs(1);
/// Runs shown in full per kind of failure; the rest are counted.
const SHOWN: usize = 5;
const TERMINAL: &[&str] = &[
    "succeeded",
    "failed",
    "cached",
    "skipped",
    "cancelled",
    "timed_out",
];

pub struct Inputs<'a> {
    pub triggers: &'a [Trigger],
    pub snapshot: &'a Snapshot,
    pub effects: &'a Effects,
    /// (process label, its whole log) of every api, worker (dead ones too) and Redis.
    pub logs: &'a [(String, String)],
    /// (port, label in `logs`) of each api.
    pub apis: &'a [(u16, String)],
    pub faults: &'a [Fault],
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub figures: Vec<String>,
    pub failures: Vec<String>,
}

/// Runs every check.
pub fn check(inp: &Inputs) -> Verdict {
    let mut v = Verdict::default();
    let accepted = accepted_runs(inp.triggers);
    triggers(inp, &accepted, &mut v);
    runs(inp, &accepted, &mut v);
    effects(inp, &accepted, &mut v);
    results(inp, &mut v);
    seqs(inp, &mut v);
    faults(inp, &mut v);
    v
}

/// Run ids answered to triggers, in order, each with its idempotency key.
fn accepted_runs(triggers: &[Trigger]) -> Vec<(String, String)> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for t in triggers {
        if let Outcome::Accepted(id) = &t.outcome
            && seen.insert(id.clone(), t.key.clone()).is_none()
        {
            out.push((id.clone(), t.key.clone()));
        }
    }
    out
}

fn triggers(inp: &Inputs, accepted: &[(String, String)], v: &mut Verdict) {
    let ts = inp.triggers;
    let unavailable = ts
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Unavailable(_)))
        .count();
    let failed: Vec<&Trigger> = ts
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Failed(_)))
        .collect();
    let slow: Vec<&Trigger> = ts.iter().filter(|t| t.took > TRIGGER_LIMIT).collect();
    let slowest = ts.iter().map(|t| t.took).max().unwrap_or_default();
    v.figures.push(format!(
        "runs accepted: {} (triggers {}: unavailable {unavailable}, failed {}, slower than {}: {}, slowest {})",
        accepted.len(),
        ts.len(),
        failed.len(),
        secs(TRIGGER_LIMIT),
        slow.len(),
        secs(slowest)
    ));
    let show = |list: &[&Trigger]| {
        list.iter()
            .take(30)
            .map(|t| {
                format!(
                    "  key {} on api :{} at {} (+{}) took {}: {:?}",
                    t.key,
                    t.api_port,
                    t.wall.format("%H:%M:%S%.3f"),
                    secs(t.at),
                    secs(t.took),
                    t.outcome
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if !failed.is_empty() {
        v.failures.push(format!(
            "{} triggerRun calls failed with something other than UNAVAILABLE:\n{}\n{}",
            failed.len(),
            show(&failed),
            trigger_evidence(inp, &failed)
        ));
    }
    if !slow.is_empty() {
        v.failures.push(format!(
            "{} triggerRun calls took longer than {} (faults: {}):\n{}\n{}",
            slow.len(),
            secs(TRIGGER_LIMIT),
            fault_times(inp.faults),
            show(&slow),
            trigger_evidence(inp, &slow)
        ));
    }
    let answered: HashMap<&str, ()> = accepted.iter().map(|(id, _)| (id.as_str(), ())).collect();
    let unanswered = inp
        .snapshot
        .runs
        .keys()
        .filter(|id| !answered.contains_key(id.as_str()))
        .count();
    v.figures.push(format!(
        "runs in Postgres never answered with an id: {unanswered}"
    ));
}

fn runs(inp: &Inputs, accepted: &[(String, String)], v: &mut Verdict) {
    let mut by_status: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (id, _) in accepted {
        let status = inp
            .snapshot
            .runs
            .get(id)
            .map_or("missing from postgres", |r| r.status.as_str());
        by_status.entry(status.to_string()).or_default().push(id);
    }
    let count = |s: &str| by_status.get(s).map_or(0, Vec::len);
    let lost: Vec<&str> = ["queued", "running", "missing from postgres"]
        .iter()
        .flat_map(|s| by_status.get(*s).into_iter().flatten().copied())
        .collect();
    v.figures
        .push(format!("runs succeeded: {}", count("succeeded")));
    let others: Vec<String> = by_status
        .iter()
        .filter(|(s, _)| *s != "succeeded")
        .map(|(s, ids)| format!("{s} {}", ids.len()))
        .collect();
    v.figures.push(format!(
        "runs lost (accepted, not ended): {}{}",
        lost.len(),
        if others.is_empty() {
            String::new()
        } else {
            format!(" (not succeeded: {})", others.join(", "))
        }
    ));
    for (status, ids) in &by_status {
        if status == "succeeded" {
            continue;
        }
        let shown: Vec<String> = ids.iter().take(SHOWN).map(|id| evidence(inp, id)).collect();
        v.failures.push(format!(
            "{} accepted runs ended {status} instead of SUCCEEDED{}:\n{}",
            ids.len(),
            if ids.len() > SHOWN {
                format!(" (first {SHOWN} shown; all: {ids:?})")
            } else {
                String::new()
            },
            shown.join("\n")
        ));
    }
}

/// No step that succeeded ran again, and its recorded attempt's effect happened exactly once.
fn effects(inp: &Inputs, accepted: &[(String, String)], v: &mut Verdict) {
    let mut bad = Vec::new();
    for (id, _) in accepted {
        for t in inp.snapshot.tasks.get(id).into_iter().flatten() {
            if t.status != "succeeded" {
                continue;
            }
            let lines = inp.effects.attempts(id, &t.name);
            let later: Vec<i64> = lines.iter().copied().filter(|a| *a > t.attempt).collect();
            let own = lines.iter().filter(|a| **a == t.attempt).count();
            if !later.is_empty() || own != 1 {
                bad.push(format!(
                    "run {id} step {}: succeeded at attempt {} but the effect file has attempts {lines:?} \
                     ({own} line(s) of attempt {}, later attempts {later:?})\n{}",
                    t.name,
                    t.attempt,
                    t.attempt,
                    evidence(inp, id)
                ));
            }
        }
    }
    v.figures.push(format!(
        "duplicate effects of finished steps: {}",
        bad.len()
    ));
    if !inp.effects.malformed.is_empty() {
        v.failures.push(format!(
            "{} malformed side-effect lines: {:?}",
            inp.effects.malformed.len(),
            &inp.effects.malformed[..inp.effects.malformed.len().min(10)]
        ));
    }
    if !bad.is_empty() {
        v.failures.push(format!(
            "{} finished steps ran again or lost their effect:\n{}",
            bad.len(),
            bad.into_iter().take(SHOWN).collect::<Vec<_>>().join("\n")
        ));
    }
}

/// Each task one result: at most one terminal TASK event per (run, step, attempt) — an attempt
/// being counted by the step's `running` events — at most one `succeeded` per (run, step), and
/// the task row's status is its last terminal event's.
fn results(inp: &Inputs, v: &mut Verdict) {
    let mut bad = Vec::new();
    for (run, events) in &inp.snapshot.events {
        let mut attempt: HashMap<&str, i64> = HashMap::new();
        let mut terminal: HashMap<(&str, i64), Vec<i64>> = HashMap::new();
        let mut succeeded: HashMap<&str, usize> = HashMap::new();
        let mut last: HashMap<&str, &str> = HashMap::new();
        for e in events.iter().filter(|e| e.kind == "task") {
            let step = e.step.as_str();
            if e.status == "running" {
                *attempt.entry(step).or_default() += 1;
            }
            if TERMINAL.contains(&e.status.as_str()) {
                let a = attempt.get(step).copied().unwrap_or(0);
                terminal.entry((step, a)).or_default().push(e.seq);
                last.insert(step, e.status.as_str());
                if e.status == "succeeded" {
                    *succeeded.entry(step).or_default() += 1;
                }
            }
        }
        let mut why = Vec::new();
        for ((step, a), seqs) in &terminal {
            if seqs.len() > 1 {
                why.push(format!(
                    "step {step} attempt {a}: terminal events at seqs {seqs:?}"
                ));
            }
        }
        for (step, n) in &succeeded {
            if *n > 1 {
                why.push(format!("step {step}: {n} succeeded events"));
            }
        }
        for t in inp.snapshot.tasks.get(run).into_iter().flatten() {
            if let Some(s) = last.get(t.name.as_str())
                && *s != t.status
            {
                why.push(format!(
                    "step {}: task row says {} but its last terminal event says {s}",
                    t.name, t.status
                ));
            }
        }
        if !why.is_empty() {
            why.sort();
            bad.push(format!("{}\n{}", why.join("; "), evidence(inp, run)));
        }
    }
    v.figures
        .push(format!("runs with a task recorded twice: {}", bad.len()));
    if !bad.is_empty() {
        v.failures.push(format!(
            "{} runs have a task with more than one result:\n{}",
            bad.len(),
            bad.into_iter().take(SHOWN).collect::<Vec<_>>().join("\n")
        ));
    }
}

/// Each run's event seqs are exactly 1..n, and its `last_seq` counter is n.
fn seqs(inp: &Inputs, v: &mut Verdict) {
    let mut bad = Vec::new();
    for (id, run) in &inp.snapshot.runs {
        let seqs: Vec<i64> = inp
            .snapshot
            .events
            .get(id)
            .into_iter()
            .flatten()
            .map(|e| e.seq)
            .collect();
        let n = seqs.len() as i64;
        let missing: Vec<i64> = (1..=n.max(run.last_seq))
            .filter(|s| seqs.binary_search(s).is_err())
            .collect();
        if !missing.is_empty() || run.last_seq != n {
            bad.push(format!(
                "run {id}: {n} events, last_seq {}, missing seqs {missing:?}\n{}",
                run.last_seq,
                evidence(inp, id)
            ));
        }
    }
    v.figures
        .push(format!("runs with a seq gap: {}", bad.len()));
    if !bad.is_empty() {
        v.failures.push(format!(
            "{} runs have a gap in their event seqs:\n{}",
            bad.len(),
            bad.into_iter().take(SHOWN).collect::<Vec<_>>().join("\n")
        ));
    }
}

fn faults(inp: &Inputs, v: &mut Verdict) {
    v.figures
        .push(format!("faults injected: {}", inp.faults.len()));
    for f in inp.faults {
        v.figures.push(format!(
            "recovery after {}: {} (on {}, {} → {})",
            f.kind.name(),
            f.recovery.map_or("none within the bound".to_string(), secs),
            f.victim,
            f.started.format("%H:%M:%S%.3f"),
            f.ended.format("%H:%M:%S%.3f")
        ));
    }
    let max = inp.faults.iter().filter_map(|f| f.recovery).max();
    let unrecovered = inp.faults.iter().filter(|f| f.recovery.is_none()).count();
    v.figures.push(format!(
        "max recovery: {}{}",
        max.map_or("-".to_string(), secs),
        if unrecovered > 0 {
            format!(" ({unrecovered} faults without recovery within the bound)")
        } else {
            String::new()
        }
    ));
}

/// When each fault happened, to read slow triggers against.
fn fault_times(faults: &[Fault]) -> String {
    faults
        .iter()
        .map(|f| {
            format!(
                "{} {}–{}",
                f.kind.name(),
                f.started.format("%H:%M:%S"),
                f.ended.format("%H:%M:%S")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
