//! Appending a running step's output to its full log, under the run's lease like every other
//! execution write (a fenced-off worker cannot add to a log another worker now owns).

use super::Execution;
use crate::error::Result;
use crate::repo;

impl Execution {
    /// Stores chunk `seq` of `step`'s log for `attempt`.
    pub async fn append_log(
        &self,
        step: &str,
        attempt: i32,
        seq: i32,
        content: String,
    ) -> Result<()> {
        let (run_id, step) = (self.run_id, step.to_string());
        self.write(move |conn| {
            repo::logs::append(conn, run_id, &step, attempt, seq, &content)?;
            Ok(((), vec![]))
        })
        .await
    }
}
