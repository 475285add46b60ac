//! Parsing a crontab (Vixie cron / cronie user crontab syntax) into legacy tasks, and the
//! translation of crontab schedules into the cron dialect TMS accepts.
//!
//! Supported: five-field lines (minute hour day-of-month month day-of-week, then the command)
//! with `*`, ranges, steps on `*` or ranges, lists and names (`jan`, `mon-fri`, any case); the
//! macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`
//! (translated into five fields); environment lines `KEY=value` (or `KEY = "value"`, quoted
//! with `"` or `'`), which apply to the lines that FOLLOW them only; comments and blank lines.
//!
//! Refused, each with a problem at `<file>:<line>`: `@reboot` and other macros, lines with a
//! user column (the `/etc/crontab` format) or six schedule fields, a `%` in the command (cron
//! turns it into a newline and feeds the rest to stdin; `\%` is a literal `%` and is
//! accepted), a single value with a step (`5/10`, which Vixie refuses and cronie reads
//! differently), and anything else that is not the syntax above.
//!
//! Day of week: crontab numbers days 0-7 (0 and 7 are Sunday) while the `cron` crate TMS
//! uses numbers them 1-7 from Sunday, so TMS refuses numbered days (see
//! `schedules::expr`). Numeric days are therefore expanded (ranges, lists, `*/2`, `1-5/2`)
//! and rewritten as day NAMES with the same meaning (`1-5` → `MON-FRI`, `0,7` → `SUN`,
//! `*/2` → `SUN,TUE,THU,SAT`). Minutes, hours, days of month and months mean the same in both
//! dialects and pass through (month names upper-cased).
//!
//! Day-of-month AND day-of-week: when both are restricted (neither field starts with `*`),
//! Vixie cron runs the job when EITHER matches (`0 0 1 * MON` = the 1st and every Monday),
//! while the `cron` crate requires BOTH (the 1st when it is a Monday). Such schedules are
//! reported as a problem ("cron dialects disagree") rather than imported with a different
//! meaning. When either field starts with `*` both dialects AND them (Vixie's star rule).
//!
//! Legacy ids: `cron-` + the first 12 hex digits of SHA-256 over the schedule as written
//! (its fields joined by single spaces) + `"\n"` + the command, with `-2`, `-3`, … appended
//! to identical lines after the first, in file order. Editing a line therefore makes it a
//! different legacy task; moving it does not.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::model::{LegacyTask, Parsed, Problem};
use super::{MAX_TASKS, check_env_name, too_many_tasks};

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Parses a crontab; `file` labels positions (`<file>:<line>`, lines counted from 1).
pub fn parse_crontab(content: &str, file: &str) -> Parsed {
    let mut out = Parsed::default();
    let candidates = content
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .count();
    if candidates > MAX_TASKS {
        out.problems.push(too_many_tasks(candidates));
        return out;
    }
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    for (i, raw) in content.lines().enumerate() {
        let position = format!("{file}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |reason: String| Problem {
            position: position.clone(),
            reason,
            legacy_id: None,
        };
        if let Some(assignment) = env_assignment(line) {
            match assignment {
                Ok((k, v)) => {
                    env.insert(k, v);
                }
                Err(reason) => out.problems.push(problem(reason)),
            }
            continue;
        }
        match parse_line(line) {
            Ok((schedule_src, schedule, command)) => {
                let base = legacy_id(&schedule_src, &command);
                let n = seen_ids.entry(base.clone()).or_insert(0);
                *n += 1;
                let id = if *n == 1 { base } else { format!("{base}-{n}") };
                out.tasks.push(LegacyTask {
                    id,
                    name: None,
                    image: None,
                    command,
                    schedule: Some(schedule),
                    env: env.clone(),
                    tags: Vec::new(),
                    timeout_seconds: None,
                    retries: None,
                    depends_on: Vec::new(),
                    position: position.clone(),
                });
            }
            Err(reason) => out.problems.push(problem(reason)),
        }
    }
    out
}

/// `cron-` + 12 hex of SHA-256(schedule + "\n" + command).
fn legacy_id(schedule: &str, command: &str) -> String {
    let digest = Sha256::digest(format!("{schedule}\n{command}").as_bytes());
    format!("cron-{}", &hex::encode(digest)[..12])
}

/// `Some` when the line is an environment assignment (`NAME=…` / `NAME = …`), with the
/// variable or the reason it is refused.
fn env_assignment(line: &str) -> Option<Result<(String, String), String>> {
    let eq = line.find('=')?;
    let name = line[..eq].trim();
    // A schedule line starts with a field (`*`, a digit) or `@`; a command may contain `=`
    // later, but then what precedes it has whitespace or field characters.
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || name.as_bytes()[0].is_ascii_digit()
    {
        return None;
    }
    if let Err(reason) = check_env_name(name) {
        return Some(Err(format!("environment variable `{name}`: {reason}")));
    }
    let raw = line[eq + 1..].trim();
    let value = if raw.len() >= 2
        && ((raw.starts_with('"') && raw.ends_with('"'))
            || (raw.starts_with('\'') && raw.ends_with('\'')))
    {
        raw[1..raw.len() - 1].to_string()
    } else {
        raw.to_string()
    };
    if value.contains('\0') || value.len() > crate::workflows::validate::MAX_ENV_VALUE_LEN {
        return Some(Err(format!(
            "environment variable `{name}`: value too long or contains NUL"
        )));
    }
    Some(Ok((name.to_string(), value)))
}

/// Splits a schedule line into (schedule as written, translated schedule, command).
fn parse_line(line: &str) -> Result<(String, String, String), String> {
    let (fields, rest): (Vec<&str>, &str) = if line.starts_with('@') {
        let (m, rest) = split_word(line);
        (vec![m], rest)
    } else {
        let mut fields = Vec::with_capacity(5);
        let mut rest = line;
        for _ in 0..5 {
            let (w, r) = split_word(rest);
            if w.is_empty() {
                return Err(
                    "not a crontab entry: expected five schedule fields and a command, or a \
                     KEY=value environment line"
                        .into(),
                );
            }
            fields.push(w);
            rest = r;
        }
        (fields, rest)
    };
    let command_raw = rest.trim();
    if command_raw.is_empty() {
        return Err("no command after the schedule".into());
    }
    let (next, _) = split_word(command_raw);
    if fields.len() == 5 && is_cron_field(next) {
        return Err(format!(
            "six schedule fields (seconds or a year?): crontab has five; `{next}` is not a \
             command"
        ));
    }
    if fields.len() == 5 && looks_like_user(next, command_raw) {
        return Err(format!(
            "`{next}` looks like a user column (/etc/crontab format), which is not supported: \
             import a user crontab (five fields, then the command)"
        ));
    }
    let schedule = translate_fields(&fields)?;
    let command = unescape_percent(command_raw)?;
    let source = fields.join(" ");
    Ok((source, schedule, command))
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn is_cron_field(w: &str) -> bool {
    !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b',' | b'-' | b'/'))
        && w.bytes().any(|b| b.is_ascii_digit() || b == b'*')
}

/// A well-known system account as the first word, followed by more words: the user column of
/// `/etc/crontab` and `/etc/cron.d`.
fn looks_like_user(word: &str, command: &str) -> bool {
    const USERS: [&str; 12] = [
        "root", "nobody", "daemon", "www-data", "bin", "sys", "mail", "operator", "ubuntu",
        "debian", "ec2-user", "centos",
    ];
    USERS.contains(&word) && command.split_whitespace().nth(1).is_some()
}

/// Cron turns an unescaped `%` into a newline (the rest is stdin): refused. `\%` is `%`.
fn unescape_percent(command: &str) -> Result<String, String> {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                chars.next();
                out.push('%');
            }
            '%' => {
                return Err(
                    "unescaped `%` in the command (cron sends what follows to stdin): not \
                     supported; escape it as `\\%` or move the input into the command"
                        .into(),
                );
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Translates a crontab-style schedule (five fields or a macro) into a TMS cron expression,
/// checked with `schedules::expr::parse_cron`.
pub fn translate_schedule(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.is_empty() {
        return Err("empty schedule".into());
    }
    if fields.len() != 1 && fields.len() != 5 {
        return Err(format!(
            "must have five fields (minute hour day-of-month month day-of-week) or be a macro \
             like @daily, not {} fields",
            fields.len()
        ));
    }
    translate_fields(&fields)
}

fn translate_fields(fields: &[&str]) -> Result<String, String> {
    if fields.len() == 1 {
        let m = fields[0].to_ascii_lowercase();
        let five = match m.as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * SUN",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            "@reboot" => {
                return Err(
                    "@reboot is not supported: TMS schedules are time-based; run it on demand"
                        .into(),
                );
            }
            _ if m.starts_with('@') => return Err(format!("unknown macro `{}`", fields[0])),
            _ => {
                return Err(format!(
                    "must have five fields (minute hour day-of-month month day-of-week), not \
                     `{}`",
                    fields[0]
                ));
            }
        };
        return Ok(five.to_string());
    }
    let names = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    for (f, name) in fields.iter().zip(names) {
        check_field_syntax(f, name)?;
    }
    let (dom, dow) = (fields[2], fields[4]);
    if !dom.starts_with('*') && !dow.starts_with('*') {
        return Err(format!(
            "day-of-month and day-of-week both restricted: cron dialects disagree (`{dom}` \
             and `{dow}`: Vixie cron runs on either, TMS only when both match); split it into \
             two entries"
        ));
    }
    let month = fields[3].to_ascii_uppercase();
    let dow = translate_dow(dow)?;
    let out = format!(
        "{} {} {} {} {}",
        fields[0], fields[1], fields[2], month, dow
    );
    crate::schedules::expr::parse_cron(&out)?;
    Ok(out)
}

fn check_field_syntax(f: &str, name: &str) -> Result<(), String> {
    let letters_ok = matches!(name, "month" | "day-of-week");
    if !f.bytes().all(|b| {
        b.is_ascii_digit()
            || matches!(b, b'*' | b',' | b'-' | b'/')
            || (letters_ok && b.is_ascii_alphabetic())
    }) {
        return Err(format!("{name} `{f}`: unsupported syntax"));
    }
    for item in f.split(',') {
        if item.is_empty() {
            return Err(format!("{name} `{f}`: empty list item"));
        }
        if let Some((base, step)) = item.split_once('/') {
            if base != "*" && !base.contains('-') {
                return Err(format!(
                    "{name} `{f}`: a step needs `*` or a range before it (`{base}/{step}` means \
                     different things in different crons)"
                ));
            }
            if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) || step == "0" {
                return Err(format!("{name} `{f}`: step must be a positive number"));
            }
        }
    }
    if name == "month" {
        for item in f.split(',') {
            let base = item.split('/').next().unwrap_or_default();
            for v in base.split('-') {
                if v.bytes().all(|b| b.is_ascii_alphabetic())
                    && !v.is_empty()
                    && !MONTH_NAMES.contains(&v.to_ascii_uppercase().as_str())
                {
                    return Err(format!("month `{f}`: `{v}` is not a month name"));
                }
            }
        }
    }
    Ok(())
}

fn day_value(v: &str, field: &str) -> Result<u32, String> {
    if let Ok(n) = v.parse::<u32>() {
        if n <= 7 {
            return Ok(n);
        }
        return Err(format!("day-of-week `{field}`: {n} is out of range 0-7"));
    }
    let up = v.to_ascii_uppercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == up)
        .map(|p| p as u32)
        .ok_or_else(|| format!("day-of-week `{field}`: `{v}` is not a day (0-7 or sun-sat)"))
}

/// Expands a crontab day-of-week field into day names (Sunday = 0 or 7).
fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (
                b,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in `{field}`"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if base == "*" {
            (0, 7)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (day_value(a, field)?, day_value(b, field)?);
            if a > b {
                return Err(format!(
                    "day-of-week `{field}`: range `{base}` runs backwards"
                ));
            }
            (a, b)
        } else {
            let v = day_value(base, field)?;
            (v, v)
        };
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    if days.iter().all(|&d| d) {
        return Ok("*".into());
    }
    // Runs of three or more consecutive days become ranges (`MON-FRI`).
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && days[i + 1] {
            i += 1;
        }
        match i - start {
            0 => parts.push(DAY_NAMES[start].to_string()),
            1 => {
                parts.push(DAY_NAMES[start].to_string());
                parts.push(DAY_NAMES[i].to_string());
            }
            _ => parts.push(format!("{}-{}", DAY_NAMES[start], DAY_NAMES[i])),
        }
        i += 1;
    }
    Ok(parts.join(","))
}
