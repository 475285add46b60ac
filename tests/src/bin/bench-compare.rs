//! The table of `scripts/bench compare`: TMS's figures (the scenario JSON files in BENCH_DIR)
//! next to the peer harnesses' summary lines (`peer-<name>.txt`, exit status in
//! `peer-<name>.rc`, both in BENCH_DIR), with the ratio and the target. Prints it and
//! writes it as markdown to BENCH_DIR/compare.md (or BENCH_COMPARE_OUT). A missing or failed
//! TMS scenario or peer harness shows in its cells; it never stops the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

/// A TMS figure: the value, or why there is none.
fn tms(dir: &Path, scenario: &str, figure: &str) -> Result<f64, String> {
    let path = dir.join(format!("{scenario}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|_| format!("no {scenario}.json (scenario failed?)"))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))?;
    doc["figures"][figure]["value"]
        .as_f64()
        .ok_or_else(|| format!("{scenario}: no {figure}"))
}

/// The peer harnesses' outputs: name → (exit status, summary lines).
struct Peers {
    dir: PathBuf,
    cache: HashMap<String, (Option<i32>, String)>,
}

impl Peers {
    fn load(&mut self, name: &str) -> &(Option<i32>, String) {
        let dir = self.dir.clone();
        self.cache.entry(name.to_string()).or_insert_with(|| {
            let rc = std::fs::read_to_string(dir.join(format!("peer-{name}.rc")))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let out =
                std::fs::read_to_string(dir.join(format!("peer-{name}.txt"))).unwrap_or_default();
            (rc, out)
        })
    }

    /// `key=` of the first summary line of harness `name` that has every one of `words`.
    fn figure(&mut self, name: &str, words: &[&str], key: &str) -> Result<f64, String> {
        let (rc, out) = self.load(name).clone();
        let line = out
            .lines()
            .find(|l| words.iter().all(|w| l.split_whitespace().any(|t| t == *w)));
        let found = line.and_then(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        });
        match (found, rc) {
            (Some(v), _) => Ok(v),
            (None, Some(0)) => Err(format!("{name}: no {} line", words.join(" "))),
            (None, Some(code)) => Err(format!("{name} failed (exit {code}), see peer-{name}.log")),
            (None, None) => Err(format!("{name} not run")),
        }
    }
}

enum Target {
    /// TMS ≥ value.
    AtLeast(f64),
    /// TMS ≤ value.
    AtMost(f64),
    /// TMS / peer ≥ value.
    RatioAtLeast(f64),
    /// TMS / peer ≤ value.
    RatioAtMost(f64),
    None,
}

struct Row {
    figure: String,
    unit: &'static str,
    tms: Result<f64, String>,
    peer: Option<Result<f64, String>>,
    target: Target,
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl Row {
    fn cells(&self) -> [String; 6] {
        let show = |r: &Result<f64, String>| match r {
            Ok(v) => format!("{} {}", num(*v), self.unit),
            Err(e) => format!("— ({e})"),
        };
        let ratio = match (&self.tms, &self.peer) {
            (Ok(t), Some(Ok(p))) if *p != 0.0 => Some(t / p),
            _ => None,
        };
        let (target, met) = match self.target {
            Target::AtLeast(x) => (
                format!("≥ {} {}", num(x), self.unit),
                self.tms.as_ref().ok().map(|t| *t >= x),
            ),
            Target::AtMost(x) => (
                format!("≤ {} {}", num(x), self.unit),
                self.tms.as_ref().ok().map(|t| *t <= x),
            ),
            Target::RatioAtLeast(x) => (format!("≥ {x}× peer"), ratio.map(|r| r >= x)),
            Target::RatioAtMost(x) => (format!("≤ {x}× peer"), ratio.map(|r| r <= x)),
            Target::None => ("—".into(), None),
        };
        let met = match (met, &self.target) {
            (_, Target::None) => "—".to_string(),
            (Some(true), _) => "yes".into(),
            (Some(false), _) => "**no**".into(),
            (None, _) => "unknown".into(),
        };
        [
            self.figure.clone(),
            show(&self.tms),
            self.peer.as_ref().map(show).unwrap_or_else(|| "—".into()),
            ratio
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "—".into()),
            target,
            met,
        ]
    }
}

fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench".into()));
    let mut peers = Peers {
        dir: dir.clone(),
        cache: HashMap::new(),
    };
    let t = |s: &str, f: &str| tms(&dir, s, f);
    let rows = vec![
        Row {
            figure: "e2e one-step `true` runs, 16 GraphQL clients vs BullMQ `JOB=spawn` e2e one at a time".into(),
            unit: "runs/s",
            tms: t("e2e", "e2e_runs_per_s"),
            peer: Some(peers.figure("bullmq", &["metric=e2e_serial"], "jobs_per_s")),
            target: Target::RatioAtLeast(2.0),
        },
        Row {
            figure: "e2e one-step runs vs BullMQ `JOB=spawn` drain (pre-filled queue)".into(),
            unit: "runs/s",
            tms: t("e2e", "e2e_runs_per_s"),
            peer: Some(peers.figure("bullmq", &["metric=drain"], "jobs_per_s")),
            target: Target::None,
        },
        Row {
            figure: "e2e trigger → finished p50".into(),
            unit: "ms",
            tms: t("e2e", "e2e_trigger_to_finished_p50_ms"),
            peer: None,
            target: Target::None,
        },
        Row {
            figure: "e2e trigger → finished p99".into(),
            unit: "ms",
            tms: t("e2e", "e2e_trigger_to_finished_p99_ms"),
            peer: None,
            target: Target::None,
        },
        Row {
            figure: "4-step diamond trigger → finished p50".into(),
            unit: "ms",
            tms: t("dag", "dag_diamond_trigger_to_finished_p50_ms"),
            peer: None,
            target: Target::AtMost(15.0),
        },
        Row {
            figure: "4-step diamond trigger → finished p99".into(),
            unit: "ms",
            tms: t("dag", "dag_diamond_trigger_to_finished_p99_ms"),
            peer: None,
            target: Target::AtMost(30.0),
        },
        Row {
            figure: "burst of 4-step runs".into(),
            unit: "steps/s",
            tms: t("dag", "dag_burst_steps_per_s"),
            peer: None,
            target: Target::AtLeast(1000.0),
        },
        Row {
            figure: "triggerRun at 16 clients (peer: BullMQ enqueue one at a time, if measured)"
                .into(),
            unit: "/s",
            tms: t("trigger", "trigger_per_s"),
            peer: Some(peers.figure("bullmq", &["metric=enqueue_serial"], "jobs_per_s"))
                .filter(|p| p.is_ok()),
            target: Target::AtLeast(2000.0),
        },
        Row {
            figure: "triggerRun latency p99".into(),
            unit: "ms",
            tms: t("trigger", "trigger_p99_ms"),
            peer: None,
            target: Target::AtMost(20.0),
        },
        Row {
            figure: "reads `runs(first: 20)` nested, wrk 64 conns, vs PostGraphile (2 workers) flat"
                .into(),
            unit: "req/s",
            tms: t("reads", "reads_nested_rps"),
            peer: Some(peers.figure(
                "postgraphile",
                &["metric=read_first20", "cluster_workers=2"],
                "rps",
            )),
            target: Target::RatioAtLeast(2.0),
        },
        Row {
            figure: "reads nested p99".into(),
            unit: "ms",
            tms: t("reads", "reads_nested_p99_ms"),
            peer: Some(peers.figure(
                "postgraphile",
                &["metric=read_first20", "cluster_workers=2"],
                "p99_ms",
            )),
            target: Target::AtMost(25.0),
        },
        Row {
            figure: "reads `runs(first: 20)` flat (same shape as PostGraphile)".into(),
            unit: "req/s",
            tms: t("reads", "reads_flat_rps"),
            peer: Some(peers.figure(
                "postgraphile",
                &["metric=read_first20", "cluster_workers=2"],
                "rps",
            )),
            target: Target::None,
        },
        Row {
            figure: "reads flat p99".into(),
            unit: "ms",
            tms: t("reads", "reads_flat_p99_ms"),
            peer: Some(peers.figure(
                "postgraphile",
                &["metric=read_first20", "cluster_workers=2"],
                "p99_ms",
            )),
            target: Target::None,
        },
        Row {
            figure: "fan-out 1,000 subscribers, publish → all received p50".into(),
            unit: "ms",
            tms: t("fanout", "fanout_1000_all_received_p50_ms"),
            peer: Some(peers.figure(
                "graphql-ws",
                &["metric=fanout_all_received", "subscribers=1000"],
                "p50_ms",
            )),
            target: Target::None,
        },
        Row {
            figure: "fan-out 1,000 subscribers, publish → all received p99".into(),
            unit: "ms",
            tms: t("fanout", "fanout_1000_all_received_p99_ms"),
            peer: Some(peers.figure(
                "graphql-ws",
                &["metric=fanout_all_received", "subscribers=1000"],
                "p99_ms",
            )),
            target: Target::RatioAtMost(0.5),
        },
        Row {
            figure: "fan-out 10,000 subscribers, publish → all received p99".into(),
            unit: "ms",
            tms: t("fanout", "fanout_10000_all_received_p99_ms"),
            peer: None,
            target: Target::AtMost(250.0),
        },
        Row {
            figure: "fan-out 10,000 subscribers, api peak RSS (VmHWM)".into(),
            unit: "MiB",
            tms: t("fanout", "fanout_10000_api_hwm_mib"),
            peer: None,
            target: Target::AtMost(200.0),
        },
    ];

    let header = ["figure", "TMS", "peer", "ratio", "target", "met?"];
    let cells: Vec<[String; 6]> = rows.iter().map(Row::cells).collect();
    let mut md = String::new();
    md.push_str(&format!("| {} |\n", header.join(" | ")));
    md.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for c in &cells {
        md.push_str(&format!("| {} |\n", c.join(" | ")));
    }
    let machine = tms_tests::bench::machine();
    let note = format!(
        "Measured {} on {} ({} cores, {} GiB, kernel {}); TMS and peers one after the other in one `scripts/bench compare`.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["mem_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
    );
    // Plain text for the terminal: columns padded to their widest cell.
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .zip(widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(&header.map(String::from)));
    for c in &cells {
        println!("{}", line(c));
    }
    println!("{note}");
    let out = std::env::var("BENCH_COMPARE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.join("compare.md"));
    std::fs::write(&out, format!("{note}\n{md}"))?;
    println!("table written to {}", out.display());
    Ok(())
}
