//! Keeps a step's full log: the executor's masked output lines are gathered into chunks and
//! appended to the attempt's log while the step runs (every 250 ms or 64 KiB), up to
//! `TMS_STEP_LOG_MAX_BYTES`, after which a marker says the rest was not stored.

use std::time::Duration;

use tms_core::runs::execution::Execution;
use tms_core::runs::logs::TRUNCATED_MARKER;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How often buffered output is stored while the step keeps printing.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Output buffered beyond this is stored at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// Stores the lines arriving on `lines` as `step`'s log of `attempt` until the sender is gone.
pub async fn record(
    exec: Execution,
    step: String,
    attempt: i32,
    mut lines: UnboundedReceiver<String>,
    max_bytes: usize,
) {
    let mut log = Chunks {
        exec,
        step,
        attempt,
        seq: 0,
        failed: false,
    };
    let mut buf = String::new();
    let mut stored = 0usize;
    let mut cut = false;
    let mut last_flush = Instant::now();
    loop {
        let next = tokio::time::timeout(FLUSH_EVERY, lines.recv()).await;
        match next {
            Ok(Some(line)) if !cut => {
                if stored + buf.len() + line.len() + 1 > max_bytes {
                    buf.push_str(&format!(
                        "{TRUNCATED_MARKER} {max_bytes} bytes (TMS_STEP_LOG_MAX_BYTES); the rest was not stored\n"
                    ));
                    cut = true;
                } else {
                    buf.push_str(&line);
                    buf.push('\n');
                }
            }
            // Past the limit: lines are still drained so the executor never blocks.
            Ok(Some(_)) => {}
            Ok(None) => {
                log.store(&mut buf).await;
                return;
            }
            Err(_idle) => {}
        }
        if !buf.is_empty() && (buf.len() >= CHUNK_BYTES || last_flush.elapsed() >= FLUSH_EVERY) {
            stored += buf.len();
            log.store(&mut buf).await;
            last_flush = Instant::now();
        }
    }
}

struct Chunks {
    exec: Execution,
    step: String,
    attempt: i32,
    seq: i32,
    /// A write failed: the rest is not stored (the tail still is).
    failed: bool,
}

impl Chunks {
    async fn store(&mut self, buf: &mut String) {
        if buf.is_empty() || self.failed {
            buf.clear();
            return;
        }
        let content = std::mem::take(buf);
        match self
            .exec
            .append_log(&self.step, self.attempt, self.seq, content)
            .await
        {
            Ok(()) => self.seq += 1,
            Err(e) => {
                self.failed = true;
                tracing::warn!(run_id = %self.exec.run_id(), step = %self.step, error = %e, "step log not stored from here on; its tail still is");
            }
        }
    }
}
