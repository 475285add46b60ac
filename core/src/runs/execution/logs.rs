//! Appending a running step's output to its full log, under the run's lease like every other
//! execution write (a fenced-off worker cannot add to a log another worker now owns).

use super::Execution;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::task_transition::Fence;

impl Execution {
    /// Stores chunk `seq` of `step`'s log for `attempt`.
    pub async fn append_log(
        &self,
        step: &str,
        attempt: i32,
        seq: i32,
        content: String,
    ) -> Result<()> {
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let step = step.to_string();
        self.retrying(move |conn| {
            let fence = Fence {
                run_id,
                owner: &owner,
                epoch,
            };
            if repo::logs::append_fenced(conn, &fence, &step, attempt, seq, &content)? {
                Ok(())
            } else {
                Err(Error::Conflict("run lease lost".into()))
            }
        })
        .await
    }
}
