//! The fault-injection suite's parts (issue 12): continuous triggering (`load`), the faults and
//! their recovery times (`faults`), what Postgres and the side-effect file hold afterwards
//! (`db`), and the checks (`checks`) with their evidence (`evidence`).

pub mod checks;
pub mod db;
pub mod evidence;
pub mod faults;
pub mod load;

use std::time::Duration;

use anyhow::Result;

/// How long a run lease lasts (`TMS_RUN_LEASE_SECONDS`); the SIGSTOP fault outlasts it.
pub const LEASE_SECONDS: u64 = 4;
/// `TMS_SHUTDOWN_GRACE_SECONDS`: how long a worker lets running steps finish on SIGTERM.
pub const SHUTDOWN_GRACE_SECONDS: u64 = 5;

/// Settings every api and worker of the suite gets, which the binaries already understand.
pub const SETTINGS: &[(&str, &str)] = &[("TMS_RUN_LEASE_SECONDS", "4")];

/// PENDING SETTINGS — they land on main in parallel with this suite. Unknown settings stop
/// start-up, so each is passed only once the binaries know it (it is in
/// `tms_core::config::KNOWN_ENV`, the list start-up checks against); the test prints the ones
/// it left out. To force them regardless, move them to `SETTINGS`.
pub const PENDING_SETTINGS: &[(&str, &str)] = &[
    // The worker lets running steps finish this long on SIGTERM, hands its runs back, exits 0.
    ("TMS_SHUTDOWN_GRACE_SECONDS", "5"),
    // How often the reconciler looks for runs the queue lost.
    ("TMS_RECONCILE_SECONDS", "1"),
    // A queued run missing from the queue this long is enqueued again.
    ("TMS_LOST_JOB_SECONDS", "3"),
];

/// The settings to pass (`SETTINGS` and the pending ones the binaries know) and the names of
/// the pending ones left out.
pub fn settings() -> (Vec<(String, String)>, Vec<&'static str>) {
    let known = tms_core::config::KNOWN_ENV;
    let mut pass: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut left_out = Vec::new();
    for (k, v) in PENDING_SETTINGS {
        if known.contains(k) {
            pass.push((k.to_string(), v.to_string()));
        } else {
            left_out.push(*k);
        }
    }
    (pass, left_out)
}

/// `psql` off the async threads (the Postgres proxy and the waits run on them).
pub async fn sql(url: &str, query: &str) -> Result<String> {
    let url = url.to_string();
    let query = query.to_string();
    tokio::task::spawn_blocking(move || {
        crate::psql(&url, &["-F", "\u{1f}", "-c", &query]).map(|s| s.trim_end().to_string())
    })
    .await?
}

/// Rows of `sql` output, split on the field separator.
pub fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\u{1f}').map(String::from).collect())
        .collect()
}

/// Seconds as `1.23s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Log lines that say nothing about faults (the local executor's note on every step).
const NOISE: &[&str] = &["local executor ignores the image"];

/// The last `n` lines of `text` that contain `needle` (any line when it is empty), noise left
/// out.
pub fn excerpt(text: &str, needle: &str, n: usize) -> Vec<String> {
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(needle) && !NOISE.iter().any(|x| l.contains(x)))
        .collect();
    hits[hits.len().saturating_sub(n)..]
        .iter()
        .map(|l| truncate(l, 400))
        .collect()
}

/// The last `n` lines of `text` that mention shutting down or a signal, then its last `n`
/// lines: what a process did with SIGTERM.
pub fn shutdown_excerpt(text: &str, n: usize) -> Vec<String> {
    let words = ["shut", "signal", "sigterm", "drain", "grace"];
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            words.iter().any(|w| l.contains(w))
        })
        .collect();
    let mut out: Vec<String> = hits[hits.len().saturating_sub(n)..]
        .iter()
        .map(|l| truncate(l, 400))
        .collect();
    out.push("…".into());
    out.extend(excerpt(text, "", n));
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
