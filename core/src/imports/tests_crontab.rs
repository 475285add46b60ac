//! Crontab parsing and schedule translation.

use super::crontab::{parse_crontab, translate_schedule};
use super::*;

fn one(line: &str) -> LegacyTask {
    let p = parse_crontab(line, "c");
    assert!(p.problems.is_empty(), "{line}: {:?}", p.problems);
    assert_eq!(p.tasks.len(), 1, "{line}");
    p.tasks.into_iter().next().unwrap()
}

fn schedule(line: &str) -> String {
    one(line).schedule.unwrap()
}

fn refused(line: &str, needle: &str) {
    let p = parse_crontab(line, "cron.txt");
    assert!(p.tasks.is_empty(), "{line}: {:?}", p.tasks);
    assert_eq!(p.problems.len(), 1, "{line}: {:?}", p.problems);
    assert_eq!(p.problems[0].position, "cron.txt:1");
    assert!(
        p.problems[0].reason.contains(needle),
        "{line}: {}",
        p.problems[0].reason
    );
}

#[test]
fn plain_ranges_steps_lists_and_names() {
    assert_eq!(schedule("*/5 * * * * echo hi"), "*/5 * * * *");
    assert_eq!(schedule("0 2 * * * pg_dump db"), "0 2 * * *");
    assert_eq!(schedule("0-30/10 8-18 * * * x"), "0-30/10 8-18 * * *");
    assert_eq!(schedule("0,15,45 1,2 1-15 * * x"), "0,15,45 1,2 1-15 * *");
    assert_eq!(schedule("0 0 * jan,jul * x"), "0 0 * JAN,JUL *");
    assert_eq!(schedule("0 0 * Jan-Jun * x"), "0 0 * JAN-JUN *");
    assert_eq!(schedule("0 0 * 1-6/2 * x"), "0 0 * 1-6/2 *");
    assert_eq!(schedule("0 9 * * mon-fri x"), "0 9 * * MON-FRI");
    assert_eq!(schedule("0 9 * * SAT,sun x"), "0 9 * * SUN,SAT");
    assert_eq!(schedule("0 9 * * Wed x"), "0 9 * * WED");
    let t = one("  30\t4 * * *   /usr/bin/backup  --all  ");
    assert_eq!(t.command, "/usr/bin/backup  --all");
    assert_eq!(t.position, "c:1");
    assert!(t.image.is_none() && t.tags.is_empty() && t.depends_on.is_empty());
}

#[test]
fn numeric_days_of_week_become_names_with_the_same_meaning() {
    let cases = [
        ("0", "SUN"),
        ("7", "SUN"),
        ("0,7", "SUN"),
        ("1-5", "MON-FRI"),
        ("1", "MON"),
        ("5-7", "SUN,FRI,SAT"),
        ("*/2", "SUN,TUE,THU,SAT"),
        ("1-5/2", "MON,WED,FRI"),
        ("0-6", "*"),
        ("*/1", "*"),
        ("1,3-4", "MON,WED,THU"),
        ("mon-3", "MON-WED"),
        ("6,0", "SUN,SAT"),
    ];
    for (dow, want) in cases {
        let line = format!("0 9 * * {dow} job");
        assert_eq!(schedule(&line), format!("0 9 * * {want}"), "{dow}");
    }
    refused("0 9 * * 8 job", "out of range");
    refused("0 9 * * 5-1 job", "backwards");
    refused("0 9 * * funday job", "not a day");
    refused("0 9 * * 1/2 job", "step needs");
}

#[test]
fn every_macro_is_translated_into_five_fields() {
    let cases = [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * SUN"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ];
    for (m, want) in cases {
        let t = one(&format!("{m} run-it --now"));
        assert_eq!(t.schedule.as_deref(), Some(want), "{m}");
        assert_eq!(t.command, "run-it --now");
        assert!(crate::schedules::expr::parse_cron(want).is_ok());
    }
    refused("@reboot start-daemon", "@reboot is not supported");
    refused("@every_5m x", "unknown macro");
}

#[test]
fn environment_lines_apply_to_following_lines_only() {
    let src = "\
# a comment
0 1 * * * first

PATH=/usr/local/bin:/bin
MAILTO = \"ops@example.com\"
  GREETING='hello world'
0 2 * * * second
PATH=/opt/bin
0 3 * * * third
";
    let p = parse_crontab(src, "crontab");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.tasks.len(), 3);
    assert!(p.tasks[0].env.is_empty());
    assert_eq!(p.tasks[0].position, "crontab:2");
    assert_eq!(p.tasks[1].env["PATH"], "/usr/local/bin:/bin");
    assert_eq!(p.tasks[1].env["MAILTO"], "ops@example.com");
    assert_eq!(p.tasks[1].env["GREETING"], "hello world");
    assert_eq!(p.tasks[2].env["PATH"], "/opt/bin");
    assert_eq!(p.tasks[2].position, "crontab:9");
    // A command with `=` is not an environment line.
    assert_eq!(one("0 1 * * * FOO=bar run").command, "FOO=bar run");
    refused("TMS_SECRET=1", "reserved");
}

#[test]
fn comments_and_blank_lines_are_skipped() {
    let p = parse_crontab("# only\n\n   \n\t# indented comment\n", "c");
    assert_eq!(p, Parsed::default());
}

#[test]
fn unsupported_lines_are_problems_with_file_and_line() {
    refused("0 2 * * * root /usr/bin/backup", "user column");
    refused("0 0 2 * * * job", "six schedule fields");
    refused("0 2 * * * printf 'a%b'", "unescaped `%`");
    refused("0 2 * * *", "no command");
    refused("0 2 * *", "not a crontab entry");
    refused("61 * * * * x", "not a valid cron expression");
    refused("0 0 L * * x", "unsupported syntax");
    refused("0 0 ? * * x", "unsupported syntax");
    refused("0 0 * foo * x", "not a month name");
    refused("0 0 1 * mon x", "cron dialects disagree");
    refused("0 0 1-7 * 1 x", "cron dialects disagree");
    let t = one("0 2 * * * date +\\%F");
    assert_eq!(t.command, "date +%F");
    let p = parse_crontab("0 1 * * * ok\n@reboot x\n0 1 * * * ok2\n", "f");
    assert_eq!(p.tasks.len(), 2);
    assert_eq!(p.problems[0].position, "f:2");
}

#[test]
fn star_day_fields_keep_the_and_rule_of_both_dialects() {
    // Vixie's star rule: a field starting with `*` makes both dialects AND the day fields.
    assert_eq!(schedule("0 0 1 * */2 x"), "0 0 1 * SUN,TUE,THU,SAT");
    assert_eq!(schedule("0 0 */2 * 1 x"), "0 0 */2 * MON");
}

#[test]
fn legacy_ids_hash_schedule_and_command_and_number_duplicates() {
    use sha2::{Digest, Sha256};
    let p = parse_crontab(
        "0 2 * * * backup\n0  2 * * *   backup\n0 3 * * * backup\n0 2 * * * backup\n",
        "c",
    );
    let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
    let base = format!(
        "cron-{}",
        &hex::encode(Sha256::digest(b"0 2 * * *\nbackup"))[..12]
    );
    assert_eq!(ids[0], base);
    assert_eq!(ids[1], format!("{base}-2"));
    assert_ne!(ids[2], base);
    assert!(ids[2].starts_with("cron-") && ids[2].len() == 17);
    assert_eq!(ids[3], format!("{base}-3"));
}

#[test]
fn json_schedules_use_the_same_translation() {
    assert_eq!(
        translate_schedule("0 9 * * 1-5").unwrap(),
        "0 9 * * MON-FRI"
    );
    assert_eq!(translate_schedule("@weekly").unwrap(), "0 0 * * SUN");
    assert!(
        translate_schedule("0 0 0 9 * * 1")
            .unwrap_err()
            .contains("five fields")
    );
    assert!(translate_schedule("").is_err());
}

#[test]
fn size_limits_give_one_problem_at_content() {
    let big = "x".repeat(MAX_CONTENT_BYTES + 1);
    let p = parse(ImportFormat::Crontab, &big);
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].position, "content");
    assert!(p.problems[0].reason.contains("16 MiB"));
    let many = "0 1 * * * x\n".repeat(MAX_TASKS + 1);
    let p = parse(ImportFormat::Crontab, &many);
    assert_eq!(p.problems.len(), 1);
    assert!(p.problems[0].reason.contains("50000"), "{:?}", p.problems);
    assert!(p.tasks.is_empty());
    let p = parse(ImportFormat::Crontab, "0 1 * * * x");
    assert_eq!(p.tasks[0].position, "crontab:1");
}
