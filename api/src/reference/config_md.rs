//! `docs/reference/config.md`, rendered from the clap definitions of both binaries: the api's
//! (`crate::config`) and the worker's, compiled here from its own source file so the reference
//! reads the one definition the worker is built from (the worker is a binary crate, so it
//! cannot be a dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::CommandFactory;

use super::{Doc, banner};

#[allow(dead_code)] // only its clap definitions are read here
#[path = "../../../worker/src/config.rs"]
mod worker_config;

const INTRO: &str = "\
# Configuration reference

Both binaries read their settings from flags or the environment (the flag wins), and from a
file named by `TMS_CONFIG` (`KEY=VALUE` lines; the environment wins over the file). Start-up
refuses a `TMS_*` variable no component knows, so a typo fails loudly. `tms-api --help` and
`tms-worker --help` print the same settings.
";

/// Read directly rather than through flags.
const OTHER: &[(&str, &str, &str)] = &[
    (
        "TMS_CONFIG",
        "api, worker",
        "Path of a settings file: `KEY=VALUE` lines with the names on this page (`#` comments, optional `export ` and quotes). The environment wins over the file; unknown or malformed lines stop start-up.",
    ),
    (
        "TMS_SECRET_<NAME>",
        "worker",
        "The value of the step secret `<NAME>` (a step lists secrets by name). Injected into the steps that name it, masked in logs, never in cache keys or API output.",
    ),
    (
        "TMS_DATA_DIR",
        "worker",
        "Base directory for the default artifact store (`$TMS_DATA_DIR/artifacts`) when `TMS_ARTIFACTS` is not set.",
    ),
    (
        "RUST_LOG",
        "api, worker",
        "Log filter (`tracing` syntax), default `info`.",
    ),
    (
        "OTEL_*",
        "api, worker",
        "The standard OpenTelemetry variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SDK_DISABLED`, ...): traces are exported over OTLP/HTTP when configured.",
    ),
];

struct Setting {
    flag: String,
    default: String,
    help: String,
    binaries: Vec<&'static str>,
}

fn collect(cmd: &clap::Command, binary: &'static str, out: &mut BTreeMap<String, Setting>) {
    for arg in cmd.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        // clap drops a one-line help's final period.
        if help.ends_with(|c: char| c.is_alphanumeric() || c == ')' || c == '`') {
            help.push('.');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() {
            let _ = write!(help, " One of {}.", values.join(", "));
        }
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let entry = out.entry(env.to_string()).or_insert_with(|| Setting {
            flag: arg.get_long().map(|l| format!("--{l}")).unwrap_or_default(),
            default: match default.join(",") {
                d if d.is_empty() => "—".into(),
                d => format!("`{d}`"),
            },
            help,
            binaries: Vec::new(),
        });
        entry.binaries.push(binary);
    }
}

/// Renders the reference.
pub fn render() -> String {
    let mut settings = BTreeMap::new();
    collect(&crate::config::Cli::command(), "api", &mut settings);
    collect(
        &worker_config::WorkerConfig::command(),
        "worker",
        &mut settings,
    );
    let mut out = banner(
        Doc::Config,
        "the flag definitions of `tms-api` and `tms-worker`",
    );
    out.push_str(INTRO);
    out.push_str("\n## Settings\n\n| variable | flag | default | binary | meaning |\n| --- | --- | --- | --- | --- |\n");
    for (env, s) in &settings {
        let _ = writeln!(
            out,
            "| `{env}` | `{}` | {} | {} | {} |",
            s.flag,
            s.default,
            s.binaries.join(", "),
            super::md_text(&s.help)
        );
    }
    out.push_str("\n## Read from the environment only\n\n| variable | binary | meaning |\n| --- | --- | --- |\n");
    for (env, binaries, help) in OTHER {
        let _ = writeln!(out, "| `{env}` | {binaries} | {} |", super::md_text(help));
    }
    out
}

/// The `TMS_*` names this reference documents (families with their prefix).
pub fn documented_names() -> Vec<String> {
    let text = render();
    let mut names: Vec<String> = text
        .split('`')
        .filter(|w| w.starts_with("TMS_"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    /// Read by the scripts and the `tms` CLI, not by the api or the worker.
    const NOT_SERVER_SETTINGS: &[&str] = &[
        "TMS_PG_PORT",
        "TMS_REDIS_PORT",
        "TMS_BUILD_PROFILE",
        "TMS_SETUP_LOG",
        "TMS_URL",
        "TMS_TOKEN",
        "TMS_EMAIL",
        "TMS_PASSWORD",
    ];

    #[test]
    fn every_known_server_variable_is_documented() {
        let documented = super::documented_names();
        let missing: Vec<&&str> = tms_core::config::KNOWN_ENV
            .iter()
            .filter(|n| !NOT_SERVER_SETTINGS.contains(n))
            .filter(|n| !documented.iter().any(|d| d == *n))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/reference/config.md: {missing:?}"
        );
    }
}
