//! Cancellation requests: one Redis subscription per worker; a request for a run this worker
//! drives stops it at once (the lease check is the backstop for lost messages).

use std::sync::Arc;

use tms_core::bus::{CANCEL_CHANNEL, subscribe_forever};
use tokio_util::sync::CancellationToken;

use crate::runner::Runner;

pub fn listen(
    redis_url: &str,
    runner: Arc<Runner>,
    stop: CancellationToken,
) -> tms_core::Result<()> {
    subscribe_forever(redis_url, CANCEL_CHANNEL, stop, move |payload| {
        if let Ok(run_id) = payload.parse() {
            runner.cancel(run_id);
        }
        true
    })
}
