//! Stopping a run in progress: the control a run's steps watch, and the registry of runs this
//! worker is driving (so duplicate deliveries and cancellation requests find them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Stops a run in progress. `stop` fires when this worker must let go (lease lost, shutdown)
/// or when a user cancelled the run; `user_cancelled` tells the two apart, because only a
/// user's cancellation is recorded (a run let go of is resumed by another worker).
#[derive(Clone)]
pub struct Control {
    pub stop: CancellationToken,
    user: Arc<AtomicBool>,
}

impl Control {
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            stop,
            user: Default::default(),
        }
    }

    pub fn cancel_by_user(&self) {
        self.user.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn user_cancelled(&self) -> bool {
        self.user.load(Ordering::SeqCst)
    }

    /// This worker let go of the run (lease lost or shutting down), as opposed to a user
    /// cancelling it.
    pub fn let_go(&self) -> bool {
        self.stop.is_cancelled() && !self.user_cancelled()
    }
}

/// The runs this process is driving, with their controls.
#[derive(Default)]
pub struct ActiveRuns {
    runs: Mutex<HashMap<Uuid, Option<Control>>>,
}

impl ActiveRuns {
    /// Registers `run_id`; `None` if this worker is already driving it (a duplicate delivery).
    pub fn enter(self: &Arc<Self>, run_id: Uuid) -> Option<ActiveGuard> {
        let mut runs = self.runs.lock().ok()?;
        if runs.contains_key(&run_id) {
            return None;
        }
        runs.insert(run_id, None);
        Some(ActiveGuard(self.clone(), run_id))
    }

    pub fn is_empty(&self) -> bool {
        self.runs.lock().map(|r| r.is_empty()).unwrap_or(true)
    }

    pub fn control(&self, run_id: Uuid) -> Option<Control> {
        self.runs.lock().ok()?.get(&run_id).cloned().flatten()
    }
}

/// Holds a run in [`ActiveRuns`] until dropped, however its drive ends.
pub struct ActiveGuard(Arc<ActiveRuns>, Uuid);

impl ActiveGuard {
    pub fn set_control(&self, ctl: Control) {
        if let Ok(mut runs) = self.0.runs.lock() {
            runs.insert(self.1, Some(ctl));
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut runs) = self.0.runs.lock() {
            runs.remove(&self.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_driven_once_and_forgotten_when_its_drive_ends() {
        let active = Arc::new(ActiveRuns::default());
        let id = Uuid::now_v7();
        let guard = active.enter(id).expect("first delivery enters");
        assert!(active.enter(id).is_none(), "duplicate delivery refused");
        assert!(active.control(id).is_none());
        let ctl = Control::new(CancellationToken::new());
        guard.set_control(ctl.clone());
        active
            .control(id)
            .expect("control registered")
            .cancel_by_user();
        assert!(ctl.user_cancelled() && !ctl.let_go());
        drop(guard);
        assert!(active.is_empty());
        assert!(active.enter(id).is_some());
    }

    #[test]
    fn letting_go_is_not_a_user_cancellation() {
        let ctl = Control::new(CancellationToken::new());
        assert!(!ctl.let_go());
        ctl.stop.cancel();
        assert!(ctl.let_go() && !ctl.user_cancelled());
    }
}
