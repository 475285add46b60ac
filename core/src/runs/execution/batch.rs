//! The writes one turn of a run's loop makes together: the ends of the steps that just ended,
//! the skips they caused and the first attempts of the steps they unblocked, in one statement
//! (`repo::task_transitions`) rather than one each, in that order.

use std::sync::Arc;

use super::{Execution, TaskEnd};
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::runs::TaskChange;
use crate::repo::task_transition::Fence;
use crate::repo::task_transitions::Item;
use crate::runs::events::task_changed;
use crate::runs::{RunEvent, TaskStatus};

/// Most task changes one statement writes (a workflow has at most 200 steps).
const MAX_ITEMS: usize = 32;

/// Task changes to write together, in the order added.
#[derive(Default)]
pub struct Batch {
    /// Ends that must be written by their own transaction (a cacheable success also stores its
    /// cache entry); written first.
    alone: Vec<(String, TaskEnd)>,
    items: Vec<Change>,
}

#[derive(Clone)]
struct Change {
    step: String,
    change: TaskChange,
    ev: NewEvent,
    /// The change is the step's success (its duration is learnt for estimates).
    succeeded: bool,
}

impl Batch {
    /// The final attempt of `step` ended (as [`Execution::finish_task`] records it).
    pub fn end(&mut self, step: &str, end: TaskEnd) {
        if end.cache.is_some() && end.output.is_some() && end.status == TaskStatus::Succeeded {
            self.alone.push((step.to_string(), end));
            return;
        }
        self.items.push(Change {
            step: step.to_string(),
            change: end.change(),
            succeeded: end.status == TaskStatus::Succeeded,
            ev: task_changed(step, end.status, end.error),
        });
    }

    /// `step` can never run: `dependency` did not succeed.
    pub fn skip(&mut self, step: &str, dependency: &str) {
        let why = format!("skipped: dependency `{dependency}` did not succeed");
        self.items.push(Change {
            step: step.to_string(),
            change: TaskChange::finished(TaskStatus::Skipped, Some(why.clone())),
            ev: task_changed(step, TaskStatus::Skipped, Some(why)),
            succeeded: false,
        });
    }

    /// Attempt `attempt` of `step` starts (as [`Execution::start_attempt`]).
    pub fn start(&mut self, step: &str, attempt: i32) {
        self.items.push(Change {
            step: step.to_string(),
            change: TaskChange::attempt_started(attempt),
            ev: task_changed(
                step,
                TaskStatus::Running,
                Some(format!("attempt {attempt}")),
            ),
            succeeded: false,
        });
    }

    /// `other`'s changes, after this batch's.
    pub fn append(&mut self, other: Batch) {
        self.alone.extend(other.alone);
        self.items.extend(other.items);
    }

    pub fn is_empty(&self) -> bool {
        self.alone.is_empty() && self.items.is_empty()
    }
}

impl Execution {
    /// Writes `batch`: its ends that need a transaction of their own first, then the rest in
    /// one statement fenced by the lease, each event estimated from the run's tasks with the
    /// changes before it applied. Tasks not in memory, or a task named twice, fall back to one
    /// write per change.
    pub async fn record(&self, batch: Batch) -> Result<()> {
        for (step, end) in batch.alone {
            self.finish_task(&step, end).await?;
        }
        let mut items = batch.items;
        // A wide fan-out is written in slices: a statement's size (and its bind parameters)
        // stays bounded, and so does the number of statement shapes each connection prepares.
        while items.len() > MAX_ITEMS {
            let rest = items.split_off(MAX_ITEMS);
            self.record_items(items).await?;
            items = rest;
        }
        self.record_items(items).await
    }

    async fn record_items(&self, mut items: Vec<Change>) -> Result<()> {
        if items.len() <= 1 {
            return match items.pop() {
                Some(c) => self.transition(&c.step, c.change, c.ev).await,
                None => Ok(()),
            };
        }
        let mut view = self.tasks.lock().await;
        let mut at = Vec::with_capacity(items.len());
        for c in &items {
            match view.iter().position(|t| t.name == c.step) {
                Some(i) if !at.contains(&i) => at.push(i),
                _ => {
                    drop(view);
                    for c in items {
                        self.transition(&c.step, c.change, c.ev).await?;
                    }
                    return Ok(());
                }
            }
        }
        let before = Arc::new(view.clone());
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let (est, wf) = (self.est.clone(), self.claim.workflow_id);
        let (changes, places) = (Arc::new(items), Arc::new(at));
        let (rows, after) = self
            .retrying(move |conn| {
                let mut tasks = (*before).clone();
                let mut evs = Vec::with_capacity(changes.len());
                for (c, &i) in changes.iter().zip(places.iter()) {
                    c.change.apply_to(&mut tasks[i]);
                    let succeeded = c.succeeded.then_some(c.step.as_str());
                    let e = est.estimate_after(conn, wf, &tasks, succeeded)?;
                    let mut ev = c.ev.clone();
                    (ev.percent, ev.eta_seconds) = (e.percent, e.eta_seconds);
                    evs.push(ev);
                }
                let fence = Fence {
                    run_id,
                    owner: &owner,
                    epoch,
                };
                let batch: Vec<Item<'_>> = changes
                    .iter()
                    .zip(&evs)
                    .map(|(c, ev)| Item {
                        step: &c.step,
                        change: &c.change,
                        ev,
                    })
                    .collect();
                let rows = repo::task_transitions::apply_many(conn, &fence, &batch)?
                    .ok_or_else(|| Error::Conflict("run lease lost".into()))?;
                Ok((rows, tasks))
            })
            .await?;
        *view = after;
        let events: Vec<RunEvent> = rows.into_iter().map(Into::into).collect();
        self.bus.publish(&events).await;
        Ok(())
    }
}
