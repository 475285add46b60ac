//! The lease of a run being driven, kept alive: renewed every third of its length, and the
//! run stopped when it is lost.

use std::time::Duration;

use tms_core::runs::execution::Execution;

use crate::control::Control;

/// Renews the lease every third of its length. Stops the run when the lease is lost, or when
/// renewals keep failing for longer than a lease (someone else may have taken over); fires a
/// user cancellation whose message never arrived.
pub async fn keep_lease(exec: Execution, lease: Duration, ctl: Control) {
    let every = lease / 3;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(every).await;
        match exec.renew(lease).await {
            Ok(Some(cancel_requested)) => {
                failures = 0;
                if cancel_requested {
                    ctl.cancel_by_user();
                }
            }
            Ok(None) => {
                ctl.stop.cancel();
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(run_id = %exec.run_id(), error = %e, "lease renewal failed");
                if every * failures >= lease {
                    ctl.stop.cancel();
                    return;
                }
            }
        }
    }
}
