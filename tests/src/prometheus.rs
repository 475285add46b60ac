//! A real Prometheus server for tests (Debian's `prometheus`, `TMS_TEST_PROMETHEUS`), scraping
//! loopback targets under their job names, and `promtool check metrics`; plus the PromQL
//! helpers that pick metric names out of an expression.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Proc, free_port, tempdir};

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Runs `promtool check metrics` on an exposition; the error carries promtool's complaints.
pub fn check_metrics(exposition: &str) -> Result<()> {
    let mut child = Command::new(tool("TMS_TEST_PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting promtool (install Debian's prometheus package)")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.trim().is_empty() {
        bail!("promtool check metrics: {}\n{text}", out.status);
    }
    Ok(())
}

/// A Prometheus server on a free loopback port with its own data directory.
pub struct Prometheus {
    pub port: u16,
    _proc: Proc,
    _dir: tempdir::Dir,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` (name, `host:port`) every `interval`, evaluating the
    /// rule files given (absolute paths) at the same interval; waits until it is ready.
    pub async fn start(
        jobs: &[(&str, String)],
        rule_files: &[&Path],
        interval: &str,
    ) -> Result<Self> {
        let dir = tempdir::Dir::new("tms-prom");
        let port = free_port();
        let mut cfg = format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nrule_files:\n"
        );
        for f in rule_files {
            cfg.push_str(&format!("  - {}\n", f.display()));
        }
        cfg.push_str("scrape_configs:\n");
        for (job, target) in jobs {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg)?;
        let log = dir.path().join("prometheus.log");
        let f = std::fs::File::create(&log)?;
        let child = Command::new(tool("TMS_TEST_PROMETHEUS", "prometheus"))
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("starting prometheus (install Debian's prometheus package)")?;
        let mut p = Prometheus {
            port,
            _proc: Proc {
                name: "prometheus",
                child,
                log,
                killed: false,
            },
            _dir: dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = p
                .http
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(p);
            }
            if let Ok(Some(status)) = p._proc.child.try_wait() {
                bail!("prometheus exited with {status}:\n{}", p._proc.log_text());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready after 30s:\n{}", p._proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self._proc.log_text()
    }

    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}/api/v1/{path}", self.port))
            .query(params)
            .send()
            .await?;
        let body: Value = resp.json().await?;
        if body["status"] != "success" {
            bail!("prometheus {path} {params:?}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// An instant query; an expression that does not parse or evaluate is an error.
    pub async fn query(&self, expr: &str) -> Result<Value> {
        self.api("query", &[("query", expr)]).await
    }

    /// Every metric name Prometheus holds a series of.
    pub async fn metric_names(&self) -> Result<BTreeSet<String>> {
        let data = self.api("label/__name__/values", &[]).await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// The loaded alerting and recording rules, each as the `/api/v1/rules` object.
    pub async fn rules(&self) -> Result<Vec<Value>> {
        let data = self.api("rules", &[]).await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// Waits until `expr` returns a non-empty vector (or fails after `timeout`).
    pub async fn wait_for(&self, expr: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let data = self.query(expr).await?;
            if data["result"].as_array().is_some_and(|r| !r.is_empty()) {
                return Ok(data);
            }
            if Instant::now() > deadline {
                bail!(
                    "`{expr}` still empty after {timeout:?}: {data}\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
    // Aggregation operators may be followed by `by (…)` rather than `(`.
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names an expression selects: identifiers that are not functions (followed by
/// `(`), keywords, label names inside `{…}` or grouping clauses, string contents or durations.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut after_grouping) = (0, 0i32, false);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => {
                braces += 1;
                i += 1;
            }
            '}' => {
                braces -= 1;
                i += 1;
            }
            '[' => {
                // Range or subquery durations.
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '(' if after_grouping => {
                // `by (a, b)`: label names.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                after_grouping = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                // A duration after `offset` (`1h`) starts with a digit and never gets here.
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let next = chars.get(j).copied();
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    after_grouping = true;
                } else if braces == 0 && next != Some('(') && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() => {
                // Numbers and durations (`5m`, `1e-9`).
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || chars[i] == '-' && chars[i - 1] == 'e')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Grafana's interval variables replaced by values Prometheus accepts.
pub fn expand_grafana(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_picked_out_of_promql() {
        let e = r#"histogram_quantile(0.99, sum by (le, route) (rate(tms_http_request_duration_seconds_bucket{job="tms-api",route=~"/graph.*"}[5m] offset 1h))) > 2 * up and on(job) x:y_z"#;
        let n: Vec<String> = metric_names(e).into_iter().collect();
        assert_eq!(
            n,
            ["tms_http_request_duration_seconds_bucket", "up", "x:y_z"]
        );
        assert_eq!(
            metric_names("sum(rate(a_total[1m])) / clamp_min(sum(b), 1e-9)").len(),
            2
        );
    }
}
