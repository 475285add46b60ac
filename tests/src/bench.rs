//! What every benchmark program shares: figures printed one per line as they are measured and
//! written to a JSON file at the end, percentiles, the memory of a process, and a direct
//! Postgres connection for cheap polling.
//!
//! The JSON goes to `$BENCH_OUT` when set, else `$BENCH_DIR/<scenario>.json` (`scripts/bench`
//! sets `BENCH_DIR` to `target/bench`), else `target/bench/<scenario>.json` under the current
//! directory. `scripts/bench compare` reads these files.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{Value, json};

/// The value at percentile `p` (0..=1) of sorted samples (nearest rank); NaN when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds of each duration, sorted.
pub fn sorted_ms(d: &[Duration]) -> Vec<f64> {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The figures of one scenario, printed as they come and written as JSON by [`Report::write`].
pub struct Report {
    scenario: String,
    figures: serde_json::Map<String, Value>,
    settings: serde_json::Map<String, Value>,
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        println!("== TMS bench: {scenario} ==");
        Self {
            scenario: scenario.to_string(),
            figures: serde_json::Map::new(),
            settings: serde_json::Map::new(),
        }
    }

    /// Records a setting the figures depend on (counts, concurrency).
    pub fn setting(&mut self, name: &str, value: impl Into<Value>) {
        self.settings.insert(name.to_string(), value.into());
    }

    /// One figure: printed as one line (`name: value unit  detail`) and kept for the JSON.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str, detail: &str) {
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        if detail.is_empty() {
            println!("{name}: {shown} {unit}");
        } else {
            println!("{name}: {shown} {unit}  ({detail})");
        }
        self.figures.insert(
            name.to_string(),
            json!({"value": if value.is_finite() { json!(value) } else { Value::Null }, "unit": unit, "detail": detail}),
        );
    }

    /// A latency distribution in milliseconds: one line with p50/p90/p99/max, kept as
    /// `<name>_p50_ms`, `<name>_p99_ms` (and p90, max) figures.
    pub fn latency(&mut self, name: &str, sorted: &[f64]) {
        let (p50, p90, p99) = (pct(sorted, 0.5), pct(sorted, 0.9), pct(sorted, 0.99));
        let max = sorted.last().copied().unwrap_or(f64::NAN);
        println!(
            "{name}: n={} p50={p50:.2} ms p90={p90:.2} ms p99={p99:.2} ms max={max:.2} ms",
            sorted.len()
        );
        for (suffix, v) in [("p50", p50), ("p90", p90), ("p99", p99), ("max", max)] {
            self.figures.insert(
                format!("{name}_{suffix}_ms"),
                json!({"value": if v.is_finite() { json!(v) } else { Value::Null }, "unit": "ms", "detail": format!("n={}", sorted.len())}),
            );
        }
    }

    /// Where the JSON goes (see the module documentation).
    pub fn path(&self) -> PathBuf {
        if let Ok(p) = std::env::var("BENCH_OUT")
            && !p.is_empty()
        {
            return PathBuf::from(p);
        }
        let dir = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
        PathBuf::from(dir).join(format!("{}.json", self.scenario))
    }

    /// Writes the JSON file and says where.
    pub fn write(&self) -> Result<PathBuf> {
        let path = self.path();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let doc = json!({
            "scenario": self.scenario,
            "at": chrono::Utc::now().to_rfc3339(),
            "machine": machine(),
            "settings": self.settings,
            "figures": self.figures,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
        Ok(path)
    }
}

/// CPU model, core count and memory of this machine, for the record.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = status_kib(&meminfo, "MemTotal:").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({"cpu": model, "cores": cores, "mem_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0, "kernel": kernel.trim()})
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resident memory of a process: (VmRSS, VmHWM = peak RSS) in MiB, from /proc/<pid>/status.
pub fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss = status_kib(&status, "VmRSS:").context("no VmRSS")?;
    let hwm = status_kib(&status, "VmHWM:").context("no VmHWM")?;
    Ok((rss as f64 / 1024.0, hwm as f64 / 1024.0))
}

/// A direct connection to the benchmark's database, for polling run states cheaply (one
/// statement, no process spawn) while the system is under load.
pub struct Pg(PgConnection);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl Pg {
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Pg(
            PgConnection::establish(url).context("connecting to Postgres")?
        ))
    }

    /// The single `bigint` a statement returns (aliased `n`).
    pub fn count(&mut self, sql: &str) -> Result<i64> {
        let rows: Vec<Count> = diesel::sql_query(sql).load(&mut self.0)?;
        Ok(rows.first().map(|r| r.n).unwrap_or(0))
    }

    /// Runs statements that return nothing.
    pub fn execute(&mut self, sql: &str) -> Result<usize> {
        Ok(diesel::sql_query(sql).execute(&mut self.0)?)
    }

    /// Rows of (text, float8) a statement returns as columns `k` and `v`.
    pub fn pairs(&mut self, sql: &str) -> Result<Vec<(String, f64)>> {
        #[derive(diesel::QueryableByName)]
        struct Pair {
            #[diesel(sql_type = diesel::sql_types::Text)]
            k: String,
            #[diesel(sql_type = diesel::sql_types::Double)]
            v: f64,
        }
        let rows: Vec<Pair> = diesel::sql_query(sql).load(&mut self.0)?;
        Ok(rows.into_iter().map(|p| (p.k, p.v)).collect())
    }
}

/// Raises this process's open-file limit (the api and worker it starts inherit it): fan-out
/// holds one socket per subscriber on each side.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < 65536 {
            lim.rlim_cur = lim.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Seconds since the epoch, as Postgres' `extract(epoch from …)` gives them.
pub fn epoch_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
