//! The DAG rules of a run, without I/O: which pending tasks are ready, which can never run
//! (a dependency did not succeed), and the run's final status once nothing is left to do.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::runs::{RunStatus, TaskStatus};

/// One task as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub depends_on: Vec<String>,
    pub status: TaskStatus,
}

/// A run's tasks in their workflow order, with their current statuses.
#[derive(Debug, Clone)]
pub struct Dag {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    timed_out: HashSet<usize>,
}

/// How the run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: RunStatus,
    pub error: Option<String>,
}

impl Dag {
    /// Refuses a graph naming a dependency that is not one of its tasks (stored data that no
    /// longer matches the rules is an error, never a panic later).
    pub fn new(nodes: Vec<Node>) -> Result<Self> {
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        if index.len() != nodes.len() {
            return Err(Error::Internal("a run has two tasks with one name".into()));
        }
        for n in &nodes {
            if let Some(d) = n.depends_on.iter().find(|d| !index.contains_key(*d)) {
                return Err(Error::Internal(format!(
                    "task `{}` depends on `{d}`, which is not a task of the run",
                    n.name
                )));
            }
        }
        Ok(Self {
            nodes,
            index,
            timed_out: HashSet::new(),
        })
    }

    pub fn status(&self, name: &str) -> Option<TaskStatus> {
        self.index.get(name).map(|&i| self.nodes[i].status)
    }

    /// Records a task's new status; unknown names are ignored (the caller's error already said
    /// so when it built the graph).
    pub fn set(&mut self, name: &str, status: TaskStatus) {
        if let Some(&i) = self.index.get(name) {
            self.nodes[i].status = status;
        }
    }

    /// Records that the task's last attempt ran out of time (it decides `timed_out` vs `failed`).
    pub fn set_timed_out(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name) {
            self.timed_out.insert(i);
        }
    }

    /// Pending tasks that can never run, each with the dependency that did not succeed, in
    /// workflow order. Transitive: a task behind a task skipped here is skipped too.
    pub fn blocked(&self) -> Vec<(String, String)> {
        let mut status: Vec<TaskStatus> = self.nodes.iter().map(|n| n.status).collect();
        let mut out = Vec::new();
        loop {
            let mut changed = false;
            for (i, n) in self.nodes.iter().enumerate() {
                if status[i] != TaskStatus::Pending {
                    continue;
                }
                let dead = n.depends_on.iter().find(|d| {
                    let s = status[self.index[d.as_str()]];
                    s.is_terminal() && !s.is_success()
                });
                if let Some(d) = dead {
                    status[i] = TaskStatus::Skipped;
                    out.push((n.name.clone(), d.clone()));
                    changed = true;
                }
            }
            if !changed {
                return out;
            }
        }
    }

    /// Pending tasks whose dependencies all succeeded, in workflow order.
    pub fn ready(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.status == TaskStatus::Pending)
            .filter(|n| {
                n.depends_on
                    .iter()
                    .all(|d| self.nodes[self.index[d.as_str()]].status.is_success())
            })
            .map(|n| n.name.clone())
            .collect()
    }

    /// How the run ends, when nothing is running or ready: succeeded when every task
    /// succeeded (or was cached); timed out when a failed task ran out of time; else failed,
    /// naming the first failed task in workflow order.
    pub fn outcome(&self) -> Outcome {
        let failed: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status == TaskStatus::Failed)
            .collect();
        if let Some(&i) = failed.iter().find(|i| self.timed_out.contains(i)) {
            return Outcome {
                status: RunStatus::TimedOut,
                error: Some(format!("step `{}` timed out", self.nodes[i].name)),
            };
        }
        if let Some(&i) = failed.first() {
            return Outcome {
                status: RunStatus::Failed,
                error: Some(format!("step `{}` failed", self.nodes[i].name)),
            };
        }
        match self.nodes.iter().find(|n| !n.status.is_success()) {
            None => Outcome {
                status: RunStatus::Succeeded,
                error: None,
            },
            // Cannot happen with a valid graph; report it rather than call the run a success.
            Some(n) => Outcome {
                status: RunStatus::Failed,
                error: Some(format!("step `{}` ended {}", n.name, n.status)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    fn dag(spec: &[(&str, &[&str], TaskStatus)]) -> Dag {
        Dag::new(
            spec.iter()
                .map(|(n, d, s)| Node {
                    name: n.to_string(),
                    depends_on: d.iter().map(|x| x.to_string()).collect(),
                    status: *s,
                })
                .collect(),
        )
        .unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn ready_waits_for_every_dependency_and_accepts_cached() {
        let mut g = dag(&[
            ("a", &[], Pending),
            ("b", &["a"], Pending),
            ("c", &["a"], Pending),
            ("d", &["b", "c"], Pending),
        ]);
        assert_eq!(g.ready(), vec!["a"]);
        g.set("a", Succeeded);
        assert_eq!(g.ready(), vec!["b", "c"]);
        g.set("b", Cached);
        g.set("c", Running);
        assert!(g.ready().is_empty());
        g.set("c", Succeeded);
        assert_eq!(g.ready(), vec!["d"]);
    }

    #[test]
    fn a_failure_blocks_its_dependents_transitively_and_nothing_else() {
        // Listed out of dependency order on purpose: d comes before the b it waits for.
        let g = dag(&[
            ("d", &["b"], Pending),
            ("a", &[], Failed),
            ("b", &["a"], Pending),
            ("c", &[], Pending),
            ("e", &["c", "d"], Pending),
        ]);
        assert_eq!(g.blocked(), pairs(&[("b", "a"), ("d", "b"), ("e", "d")]));
        assert_eq!(g.ready(), vec!["c"]);
    }

    #[test]
    fn skipped_and_cancelled_dependencies_block_too() {
        let g = dag(&[
            ("a", &[], Skipped),
            ("b", &[], Cancelled),
            ("c", &["a"], Pending),
            ("d", &["b"], Pending),
        ]);
        assert_eq!(g.blocked(), pairs(&[("c", "a"), ("d", "b")]));
    }

    #[test]
    fn outcome_names_the_failed_step_and_prefers_timed_out() {
        let mut g = dag(&[
            ("a", &[], Succeeded),
            ("b", &[], Failed),
            ("c", &[], Failed),
            ("d", &["b"], Skipped),
        ]);
        assert_eq!(
            g.outcome(),
            Outcome {
                status: RunStatus::Failed,
                error: Some("step `b` failed".into())
            }
        );
        g.set_timed_out("c");
        assert_eq!(
            g.outcome(),
            Outcome {
                status: RunStatus::TimedOut,
                error: Some("step `c` timed out".into())
            }
        );
    }

    #[test]
    fn outcome_succeeds_only_when_every_task_succeeded() {
        let g = dag(&[("a", &[], Succeeded), ("b", &["a"], Cached)]);
        assert_eq!(g.outcome().status, RunStatus::Succeeded);
        let g = dag(&[("a", &[], Succeeded), ("b", &["a"], Pending)]);
        assert_eq!(g.outcome().status, RunStatus::Failed);
    }

    #[test]
    fn unknown_dependencies_and_duplicate_names_are_errors_not_panics() {
        let bad = Dag::new(vec![Node {
            name: "a".into(),
            depends_on: vec!["ghost".into()],
            status: Pending,
        }]);
        assert!(matches!(bad, Err(Error::Internal(m)) if m.contains("ghost")));
        let n = Node {
            name: "a".into(),
            depends_on: vec![],
            status: Pending,
        };
        assert!(Dag::new(vec![n.clone(), n]).is_err());
    }
}
