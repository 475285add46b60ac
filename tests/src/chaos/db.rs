//! What the suite reads back once the runs have ended: runs, tasks and run events straight from
//! Postgres, and the steps' side-effect file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;

use super::{rows, sql};

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub status: String,
    pub error: String,
    pub deliveries: i64,
    pub last_seq: i64,
    pub lease_owner: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct TaskRow {
    pub name: String,
    pub status: String,
    pub attempt: i64,
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub kind: String,
    pub status: String,
    pub step: String,
    pub message: String,
    pub at: String,
}

impl EventRow {
    /// `12 task/running b @10:01:02.345`, plus the message if any.
    pub fn brief(&self) -> String {
        let mut s = format!("{} {}/{}", self.seq, self.kind, self.status);
        if !self.step.is_empty() {
            s += &format!(" {}", self.step);
        }
        if !self.message.is_empty() {
            s += &format!(" ({})", self.message);
        }
        s + &format!(" @{}", self.at)
    }
}

/// Everything this test's database holds about runs.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub runs: HashMap<String, RunRow>,
    /// Per run, its tasks in position order.
    pub tasks: HashMap<String, Vec<TaskRow>>,
    /// Per run, its events in `seq` order.
    pub events: HashMap<String, Vec<EventRow>>,
}

impl Snapshot {
    pub async fn read(db: &str) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        let runs = sql(
            db,
            "SELECT id, status, replace(coalesce(error, ''), E'\\n', ' '), deliveries, last_seq, \
             coalesce(lease_owner, ''), coalesce(idempotency_key, '') FROM runs",
        )
        .await?;
        for r in rows(&runs) {
            if r.len() < 7 {
                continue;
            }
            snap.runs.insert(
                r[0].clone(),
                RunRow {
                    id: r[0].clone(),
                    status: r[1].clone(),
                    error: r[2].clone(),
                    deliveries: r[3].parse().unwrap_or(-1),
                    last_seq: r[4].parse().unwrap_or(-1),
                    lease_owner: r[5].clone(),
                    key: r[6].clone(),
                },
            );
        }
        let tasks = sql(
            db,
            "SELECT run_id, name, status, attempt, replace(coalesce(error, ''), E'\\n', ' ') \
             FROM tasks ORDER BY run_id, position",
        )
        .await?;
        for r in rows(&tasks) {
            if r.len() < 5 {
                continue;
            }
            snap.tasks.entry(r[0].clone()).or_default().push(TaskRow {
                name: r[1].clone(),
                status: r[2].clone(),
                attempt: r[3].parse().unwrap_or(-1),
                error: r[4].clone(),
            });
        }
        let events = sql(
            db,
            "SELECT run_id, seq, kind, coalesce(status::text, ''), coalesce(step, ''), \
             left(replace(coalesce(message, ''), E'\\n', ' '), 120), to_char(at, 'HH24:MI:SS.MS') \
             FROM run_events ORDER BY run_id, seq",
        )
        .await?;
        for r in rows(&events) {
            if r.len() < 7 {
                continue;
            }
            snap.events.entry(r[0].clone()).or_default().push(EventRow {
                seq: r[1].parse().unwrap_or(-1),
                kind: r[2].clone(),
                status: r[3].clone(),
                step: r[4].clone(),
                message: r[5].clone(),
                at: r[6].clone(),
            });
        }
        Ok(snap)
    }
}

/// The side-effect file: one `"$TMS_RUN_ID $TMS_STEP $TMS_ATTEMPT"` line per step execution
/// that got to its effect.
#[derive(Debug, Default)]
pub struct Effects {
    /// Per (run, step), the attempts of its lines in file order.
    pub by_step: BTreeMap<(String, String), Vec<i64>>,
    /// Lines that are not three fields with a numeric attempt (torn writes, say).
    pub malformed: Vec<String>,
    pub lines: usize,
}

impl Effects {
    pub fn read(path: &Path) -> Result<Effects> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        let mut fx = Effects::default();
        for line in text.lines() {
            fx.lines += 1;
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [run, step, attempt] => match attempt.parse() {
                    Ok(a) => fx
                        .by_step
                        .entry((run.to_string(), step.to_string()))
                        .or_default()
                        .push(a),
                    Err(_) => fx.malformed.push(line.to_string()),
                },
                _ => fx.malformed.push(line.to_string()),
            }
        }
        Ok(fx)
    }

    /// The attempts recorded for (run, step), empty when none.
    pub fn attempts(&self, run: &str, step: &str) -> &[i64] {
        self.by_step
            .get(&(run.to_string(), step.to_string()))
            .map_or(&[], Vec::as_slice)
    }
}
