//! Validation of workflow input: every problem is reported with its field path before anything
//! is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::FieldError;
use crate::workflows::spec::{ScheduleInput, StepSpec, WorkflowInput};

pub const MAX_CACHE_TTL_SECONDS: u32 = 365 * 24 * 3600;
pub const MAX_STEPS: usize = 200;
pub const MAX_NAME_LEN: usize = 63;
pub const MAX_WORKFLOW_NAME_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 4_000;
pub const MAX_IMAGE_LEN: usize = 255;
pub const MAX_SCRIPT_LEN: usize = 64 * 1024;
pub const MAX_ARGS: usize = 256;
pub const MAX_ARG_LEN: usize = 8 * 1024;
pub const MAX_ENV_VARS: usize = 100;
pub const MAX_ENV_VALUE_LEN: usize = 8 * 1024;
pub const MAX_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;
pub const MAX_RETRIES: u32 = 10;
pub const MAX_BACKOFF_SECONDS: u32 = 3600;
pub const MAX_CACHE_PATHS: usize = 10;

fn is_step_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_workflow_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_WORKFLOW_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 128
}

/// Validates `input`; `Ok` means it can be stored as-is.
pub fn validate_workflow(input: &WorkflowInput) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if !is_workflow_name(&input.name) {
        errs.push(FieldError::new(
            "input.name",
            format!(
                "must be 1-{MAX_WORKFLOW_NAME_LEN} characters of letters, digits, '-', '_' or '.'"
            ),
        ));
    }
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
    {
        errs.push(FieldError::new(
            "input.description",
            format!("must be at most {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    errs.extend(validate_steps(&input.steps));
    if let Some(schedule) = &input.schedule {
        errs.extend(validate_schedule(schedule));
    }
    errs.extend(validate_limits(input));
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Largest `maxConcurrentRuns` and `rateLimit.runs`; longest `rateLimit.perSeconds` (a day).
pub const MAX_RUN_LIMIT: u32 = 100_000;
pub const MAX_RATE_WINDOW_SECONDS: u32 = 86_400;

/// Problems with the per-workflow run limits.
fn validate_limits(input: &WorkflowInput) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut within = |v: u32, max: u32, field: &str| {
        if !(1..=max).contains(&v) {
            errs.push(FieldError::new(
                field,
                format!("must be between 1 and {max}"),
            ));
        }
    };
    if let Some(n) = input.max_concurrent_runs {
        within(n, MAX_RUN_LIMIT, "input.maxConcurrentRuns");
    }
    if let Some(r) = input.rate_limit {
        within(r.runs, MAX_RUN_LIMIT, "input.rateLimit.runs");
        within(
            r.per_seconds,
            MAX_RATE_WINDOW_SECONDS,
            "input.rateLimit.perSeconds",
        );
    }
    errs
}

pub const MAX_CRON_LEN: usize = 200;

/// Problems with a schedule, under `input.schedule`.
pub fn validate_schedule(schedule: &ScheduleInput) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if schedule.cron.len() > MAX_CRON_LEN {
        errs.push(FieldError::new(
            "input.schedule.cron",
            format!("must be at most {MAX_CRON_LEN} bytes"),
        ));
    } else if let Err(e) = crate::schedules::expr::parse_cron(&schedule.cron) {
        errs.push(FieldError::new("input.schedule.cron", e));
    }
    if let Some(tz) = &schedule.timezone
        && let Err(e) = crate::schedules::expr::parse_timezone(tz)
    {
        errs.push(FieldError::new("input.schedule.timezone", e));
    }
    errs
}

pub fn validate_steps(steps: &[StepSpec]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if steps.is_empty() {
        errs.push(FieldError::new(
            "input.steps",
            "a workflow needs at least one step",
        ));
        return errs;
    }
    if steps.len() > MAX_STEPS {
        errs.push(FieldError::new(
            "input.steps",
            format!("at most {MAX_STEPS} steps are allowed, got {}", steps.len()),
        ));
        return errs;
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |f: &str| format!("input.steps[{i}].{f}");
        if !is_step_name(&step.name) {
            errs.push(FieldError::new(
                at("name"),
                format!("`{}` must match [a-z0-9-]{{1,{MAX_NAME_LEN}}}", step.name),
            ));
        } else if let Some(first) = seen.insert(step.name.as_str(), i) {
            errs.push(FieldError::new(
                at("name"),
                format!(
                    "duplicate step name `{}` (also used by input.steps[{first}])",
                    step.name
                ),
            ));
        }
        validate_image(&step.image, &at("image"), &mut errs);
        match (&step.run, &step.command) {
            (Some(_), Some(_)) => errs.push(FieldError::new(
                at("run"),
                "give either `run` (a shell script) or `command` (an argv list), not both",
            )),
            (None, None) => errs.push(FieldError::new(
                at("run"),
                "a step needs `run` (a shell script) or `command` (an argv list)",
            )),
            (Some(script), None) => {
                if script.trim().is_empty() {
                    errs.push(FieldError::new(at("run"), "must not be empty"));
                } else if script.len() > MAX_SCRIPT_LEN {
                    errs.push(FieldError::new(
                        at("run"),
                        format!("must be at most {MAX_SCRIPT_LEN} bytes"),
                    ));
                }
            }
            (None, Some(argv)) => {
                if argv.is_empty() || argv[0].is_empty() {
                    errs.push(FieldError::new(
                        at("command"),
                        "must name a program as its first element",
                    ));
                } else if argv.len() > MAX_ARGS {
                    errs.push(FieldError::new(
                        at("command"),
                        format!("at most {MAX_ARGS} arguments"),
                    ));
                } else if argv
                    .iter()
                    .any(|a| a.len() > MAX_ARG_LEN || a.contains('\0'))
                {
                    errs.push(FieldError::new(
                        at("command"),
                        format!("arguments must be at most {MAX_ARG_LEN} bytes and contain no NUL"),
                    ));
                }
            }
        }
        validate_env(&step.env, &at("env"), &mut errs);
        for (j, s) in step.secrets.iter().enumerate() {
            if !is_env_name(s) {
                errs.push(FieldError::new(
                    format!("input.steps[{i}].secrets[{j}]"),
                    "must be a valid environment variable name",
                ));
            }
        }
        if let Some(w) = &step.workdir
            && (!w.starts_with('/') || w.len() > 1024 || w.contains('\0'))
        {
            errs.push(FieldError::new(at("workdir"), "must be an absolute path"));
        }
        if let Some(t) = step.timeout_seconds
            && (t == 0 || t > MAX_TIMEOUT_SECONDS)
        {
            errs.push(FieldError::new(
                at("timeoutSeconds"),
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"),
            ));
        }
        if step.retries.is_some_and(|r| r > MAX_RETRIES) {
            errs.push(FieldError::new(
                at("retries"),
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if step
            .retry_backoff_seconds
            .is_some_and(|b| b > MAX_BACKOFF_SECONDS)
        {
            errs.push(FieldError::new(
                at("retryBackoffSeconds"),
                format!("must be at most {MAX_BACKOFF_SECONDS}"),
            ));
        }
        if let Some(t) = step.cache_ttl_seconds
            && (t == 0 || t > MAX_CACHE_TTL_SECONDS)
        {
            let why = format!("must be between 1 and {MAX_CACHE_TTL_SECONDS} (one year)");
            errs.push(FieldError::new(at("cacheTtlSeconds"), why));
        }
        if step.cache_paths.len() > MAX_CACHE_PATHS {
            errs.push(FieldError::new(
                at("cachePaths"),
                format!("at most {MAX_CACHE_PATHS} paths"),
            ));
        }
        let mut seen_paths = HashSet::new();
        for (j, p) in step.cache_paths.iter().enumerate() {
            let field = format!("input.steps[{i}].cachePaths[{j}]");
            let reserved = ["/in", "/out"]
                .iter()
                .any(|r| p == r || p.starts_with(&format!("{r}/")));
            if !p.starts_with('/') || p == "/" || p.len() > 1024 || p.contains('\0') {
                errs.push(FieldError::new(field, "must be an absolute path below /"));
            } else if reserved {
                errs.push(FieldError::new(
                    field,
                    "/in and /out are reserved for step files",
                ));
            } else if !seen_paths.insert(p.as_str()) {
                errs.push(FieldError::new(field, format!("`{p}` listed twice")));
            }
        }
        let mut deps = HashSet::new();
        for dep in &step.depends_on {
            if dep == &step.name {
                errs.push(FieldError::new(
                    at("dependsOn"),
                    format!("step `{dep}` depends on itself"),
                ));
            } else if !steps.iter().any(|s| &s.name == dep) {
                errs.push(FieldError::new(
                    at("dependsOn"),
                    format!("unknown step `{dep}`"),
                ));
            } else if !deps.insert(dep) {
                errs.push(FieldError::new(
                    at("dependsOn"),
                    format!("`{dep}` listed twice"),
                ));
            }
        }
    }
    if errs.is_empty()
        && let Some(cycle) = find_cycle(steps)
    {
        errs.push(FieldError::new(
            "input.steps",
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    errs
}

fn validate_image(image: &str, field: &str, errs: &mut Vec<FieldError>) {
    if image.trim().is_empty() {
        errs.push(FieldError::new(field, "must not be empty"));
    } else if image.len() > MAX_IMAGE_LEN {
        errs.push(FieldError::new(
            field,
            format!("must be at most {MAX_IMAGE_LEN} characters"),
        ));
    } else if !image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"./:-_@+".contains(&b))
        || image.starts_with(['.', '-', ':', '@', '/'])
    {
        errs.push(FieldError::new(
            field,
            format!("`{image}` is not a valid image reference (e.g. alpine:3.20)"),
        ));
    }
}

fn validate_env(env: &BTreeMap<String, String>, field: &str, errs: &mut Vec<FieldError>) {
    if env.len() > MAX_ENV_VARS {
        errs.push(FieldError::new(
            field,
            format!("at most {MAX_ENV_VARS} variables"),
        ));
    }
    for (k, v) in env {
        if !is_env_name(k) {
            errs.push(FieldError::new(
                format!("{field}.{k}"),
                "variable names must match [A-Za-z_][A-Za-z0-9_]*",
            ));
        } else if k.starts_with("TMS_") {
            errs.push(FieldError::new(
                format!("{field}.{k}"),
                "the TMS_ prefix is reserved",
            ));
        }
        if v.len() > MAX_ENV_VALUE_LEN || v.contains('\0') {
            errs.push(FieldError::new(
                format!("{field}.{k}"),
                format!("values must be at most {MAX_ENV_VALUE_LEN} bytes and contain no NUL"),
            ));
        }
    }
}

/// Returns one cycle as a closed path of step names (`a -> b -> a`), if the graph has any.
pub fn find_cycle(steps: &[StepSpec]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done
    let mut state = vec![0u8; steps.len()];
    let mut path: Vec<usize> = Vec::new();

    fn visit(
        n: usize,
        steps: &[StepSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[n] = 1;
        path.push(n);
        for dep in &steps[n].depends_on {
            let Some(&d) = index.get(dep.as_str()) else {
                continue;
            };
            if state[d] == 1 {
                let start = path.iter().position(|&p| p == d).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..]
                    .iter()
                    .map(|&p| steps[p].name.clone())
                    .collect();
                cycle.push(steps[d].name.clone());
                return Some(cycle);
            }
            if state[d] == 0
                && let Some(c) = visit(d, steps, index, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[n] = 2;
        None
    }

    for i in 0..steps.len() {
        if state[i] == 0
            && let Some(c) = visit(i, steps, &index, &mut state, &mut path)
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, deps: &[&str]) -> StepSpec {
        StepSpec {
            name: name.into(),
            image: "alpine:3.20".into(),
            run: Some("true".into()),
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cycle_is_named() {
        let steps = vec![step("a", &["c"]), step("b", &["a"]), step("c", &["b"])];
        let errs = validate_steps(&steps);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("a -> c -> b -> a"), "{:?}", errs);
    }

    #[test]
    fn unknown_dependency_and_duplicates_are_reported_with_paths() {
        let steps = vec![step("a", &["nope"]), step("a", &[]), step("Bad_Name", &[])];
        let errs = validate_steps(&steps);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"input.steps[0].dependsOn"));
        assert!(fields.contains(&"input.steps[1].name"));
        assert!(fields.contains(&"input.steps[2].name"));
    }

    #[test]
    fn diamond_is_valid() {
        let steps = vec![
            step("a", &[]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("d", &["b", "c"]),
        ];
        assert!(validate_steps(&steps).is_empty());
    }
}
