//! Planning legacy tasks as workflows.

use std::time::Instant;

use super::json::parse_json;
use super::plan::plan;
use super::*;
use crate::workflows::validate::validate_workflow;

const IMAGE: &str = "alpine:3.20";

fn task(id: &str, deps: &[&str]) -> LegacyTask {
    LegacyTask {
        id: id.into(),
        name: None,
        image: None,
        command: format!("run-{id} --fast"),
        schedule: None,
        env: Default::default(),
        tags: Vec::new(),
        timeout_seconds: None,
        retries: None,
        depends_on: deps.iter().map(|s| s.to_string()).collect(),
        position: format!("tasks[{id}]"),
    }
}

fn scheduled(mut t: LegacyTask, cron: &str) -> LegacyTask {
    t.schedule = Some(cron.into());
    t
}

fn diamond() -> Vec<LegacyTask> {
    vec![
        scheduled(task("a", &[]), "0 2 * * *"),
        task("b", &["a"]),
        task("c", &["a"]),
        task("d", &["b", "c"]),
    ]
}

#[test]
fn a_diamond_is_one_workflow_with_mapped_dependencies() {
    let p = plan(diamond(), IMAGE, Some("wave-1"));
    assert!(p.problems.is_empty() && p.skipped.is_empty(), "{p:?}");
    assert_eq!(p.workflows.len(), 1);
    let w = &p.workflows[0];
    assert_eq!(w.legacy_id, "a");
    assert_eq!(w.input.steps.len(), 4);
    let step = |id: &str| {
        let name = w
            .step_legacy_ids
            .iter()
            .find(|(_, l)| *l == id)
            .map(|(n, _)| n.clone())
            .unwrap();
        w.input
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let (a, b, c, d) = (step("a"), step("b"), step("c"), step("d"));
    assert!(a.depends_on.is_empty());
    assert_eq!(b.depends_on, vec![a.name.clone()]);
    let mut want = vec![b.name.clone(), c.name.clone()];
    want.sort();
    assert_eq!(d.depends_on, want);
    assert_eq!(w.input.steps[0].name, a.name, "steps in dependency order");
    assert_eq!(w.input.steps[3].name, d.name);
    assert_eq!(a.image, IMAGE);
    assert_eq!(a.run.as_deref(), Some("run-a --fast"));
    assert!(!a.cache);
    let s = w.input.schedule.as_ref().unwrap();
    assert_eq!(
        (s.cron.as_str(), s.timezone.as_deref(), s.enabled),
        ("0 2 * * *", None, Some(false))
    );
    assert_eq!(w.tags.iter().collect::<Vec<_>>(), ["wave-1"]);
    assert_eq!(w.task_checksums.len(), 4);
    assert!(w.input.name.starts_with("run-a-fast-"));
    assert!(validate_workflow(&w.input).is_ok());
}

#[test]
fn lone_tasks_are_one_step_workflows_with_their_fields() {
    let mut t = task("x", &[]);
    t.name = Some("Nightly Backup (DB)".into());
    t.image = Some("postgres:16".into());
    t.command = "pg_dump db".into();
    t.env.insert("K".into(), "V".into());
    t.tags = vec!["db".into()];
    t.timeout_seconds = Some(60);
    t.retries = Some(3);
    let p = plan(vec![t, task("y", &[])], IMAGE, None);
    assert_eq!(p.workflows.len(), 2);
    let w = &p.workflows[0];
    assert_eq!(w.legacy_id, "x");
    assert!(
        w.input.name.starts_with("nightly-backup-db-"),
        "{}",
        w.input.name
    );
    assert!(w.input.schedule.is_none());
    let s = &w.input.steps[0];
    assert_eq!(s.image, "postgres:16");
    assert_eq!(s.env["K"], "V");
    assert_eq!((s.timeout_seconds, s.retries), (Some(60), Some(3)));
    assert_eq!(w.tags.iter().collect::<Vec<_>>(), ["db"]);
    assert_eq!(p.workflows[1].input.steps.len(), 1);
}

#[test]
fn names_come_from_the_command_and_stay_within_limits() {
    let mut t = task("p", &[]);
    t.command = "FOO=1 /usr/local/bin/pg_dump /var/lib/My_DB --verbose".into();
    let mut long = task("q", &[]);
    long.name = Some("n".repeat(300));
    let mut symbols = task("r", &[]);
    symbols.command = "!!! ???".into();
    let p = plan(vec![t, long, symbols], IMAGE, None);
    let names: Vec<&str> = p.workflows.iter().map(|w| w.input.name.as_str()).collect();
    assert!(names[0].starts_with("pg-dump-my-db-"), "{}", names[0]);
    assert_eq!(names[0].len(), "pg-dump-my-db-".len() + 8);
    assert_eq!(names[1].len(), 63);
    assert!(names[2].starts_with("task-"), "{}", names[2]);
    for w in &p.workflows {
        assert!(validate_workflow(&w.input).is_ok(), "{}", w.input.name);
    }
}

#[test]
fn a_dangling_dependency_skips_the_whole_group() {
    let tasks = vec![
        task("a", &[]),
        task("b", &["a", "ghost"]),
        task("c", &["b"]),
        task("lone", &[]),
    ];
    let p = plan(tasks, IMAGE, None);
    assert_eq!(p.workflows.len(), 1);
    assert_eq!(p.workflows[0].legacy_id, "lone");
    assert_eq!(p.skipped, ["a", "b", "c"]);
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].legacy_id.as_deref(), Some("b"));
    assert_eq!(p.problems[0].position, "tasks[b]");
    assert!(p.problems[0].reason.contains("`ghost`"), "{:?}", p.problems);
}

#[test]
fn cycles_are_named_in_order() {
    let p = plan(
        vec![task("a", &["b"]), task("b", &["a"]), task("z", &[])],
        IMAGE,
        None,
    );
    assert_eq!(p.skipped, ["a", "b"]);
    assert_eq!(p.problems.len(), 1);
    assert!(
        p.problems[0].reason.contains("a -> b -> a"),
        "{:?}",
        p.problems
    );
    let p = plan(
        vec![
            task("root", &[]),
            task("x", &["root", "z"]),
            task("y", &["x"]),
            task("z", &["y"]),
        ],
        IMAGE,
        None,
    );
    assert_eq!(p.skipped, ["root", "x", "y", "z"]);
    assert!(
        p.problems[0].reason.contains("x -> z -> y -> x"),
        "{:?}",
        p.problems
    );
}

#[test]
fn schedules_belong_on_a_single_root() {
    let tasks = vec![
        scheduled(task("a", &[]), "0 1 * * *"),
        scheduled(task("b", &[]), "0 2 * * *"),
        task("c", &["a", "b"]),
    ];
    let p = plan(tasks, IMAGE, None);
    assert!(p.workflows.is_empty());
    assert_eq!(p.skipped, ["a", "b", "c"]);
    assert!(
        p.problems[0]
            .reason
            .contains("several scheduled roots (a, b)")
    );

    let tasks = vec![task("a", &[]), scheduled(task("b", &["a"]), "0 1 * * *")];
    let p = plan(tasks, IMAGE, None);
    assert_eq!(p.skipped, ["a", "b"]);
    assert_eq!(p.problems[0].legacy_id.as_deref(), Some("b"));
    assert!(p.problems[0].reason.contains("depends on other tasks"));

    // Two roots, one scheduled: the group runs on that schedule; the smallest root names it.
    let tasks = vec![
        task("a", &[]),
        scheduled(task("b", &[]), "0 1 * * *"),
        task("c", &["a", "b"]),
    ];
    let p = plan(tasks, IMAGE, None);
    assert!(p.problems.is_empty());
    assert_eq!(p.workflows[0].legacy_id, "a");
    assert_eq!(
        p.workflows[0].input.schedule.as_ref().unwrap().cron,
        "0 1 * * *"
    );
}

#[test]
fn duplicate_ids_and_oversized_groups_are_problems() {
    let p = plan(vec![task("a", &[]), task("a", &[])], IMAGE, None);
    assert!(p.workflows.is_empty());
    assert!(p.problems[0].reason.contains("duplicate id"));
    let mut chain = vec![task("s000", &[])];
    for i in 1..=200 {
        chain.push(task(&format!("s{i:03}"), &[&format!("s{:03}", i - 1)]));
    }
    let p = plan(chain, IMAGE, None);
    assert!(p.workflows.is_empty());
    assert_eq!(p.skipped.len(), 201);
    assert!(
        p.problems[0].reason.contains("at most 200 steps"),
        "{:?}",
        p.problems
    );
}

#[test]
fn the_output_does_not_depend_on_input_order() {
    let mut tasks = diamond();
    tasks.extend([
        task("m", &[]),
        task("n", &["m"]),
        task("k", &[]),
        task("q", &["ghost"]),
    ]);
    let first = plan(tasks.clone(), IMAGE, Some("t"));
    for rotation in 1..tasks.len() {
        let mut shuffled = tasks.clone();
        shuffled.rotate_left(rotation);
        if rotation % 2 == 0 {
            shuffled.reverse();
        }
        assert_eq!(
            plan(shuffled, IMAGE, Some("t")),
            first,
            "rotation {rotation}"
        );
    }
    let ids: Vec<&str> = first
        .workflows
        .iter()
        .map(|w| w.legacy_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "k", "m"]);
}

#[test]
fn names_and_checksums_are_stable_when_other_tasks_come_and_go() {
    let before = plan(diamond(), IMAGE, None);
    let mut more = diamond();
    more.push(task("aa", &[]));
    more.push(task("0", &[]));
    let after = plan(more, IMAGE, None);
    let w0 = &before.workflows[0];
    let w1 = after.workflows.iter().find(|w| w.legacy_id == "a").unwrap();
    assert_eq!(w0, w1);
    // A changed task changes its checksum and the group's, not the names.
    let mut changed = diamond();
    changed[3].command = "other".into();
    let w2 = plan(changed, IMAGE, None).workflows.remove(0);
    assert_eq!(w2.input.name, w0.input.name);
    assert_ne!(w2.checksum, w0.checksum);
    assert_ne!(w2.task_checksums["d"], w0.task_checksums["d"]);
    assert_eq!(w2.task_checksums["a"], w0.task_checksums["a"]);
}

#[test]
fn checksums_ignore_json_key_order_env_order_and_position() {
    let a = r#"{"tasks": [{"id": "t", "command": "x", "env": {"A": "1", "B": "2"},
        "tags": ["x", "y"]}]}"#;
    let b = r#"{"tasks": [{"tags": ["y", "x"], "env": {"B": "2", "A": "1"}, "command": "x",
        "id": "t"}]}"#;
    let pa = plan(parse_json(a).tasks, IMAGE, None);
    let mut tb = parse_json(b).tasks;
    tb[0].position = "tasks[9]".into();
    let pb = plan(tb, IMAGE, None);
    assert_eq!(
        pa.workflows[0].task_checksums,
        pb.workflows[0].task_checksums
    );
    assert_eq!(pa.workflows[0].checksum, pb.workflows[0].checksum);
}

#[test]
fn every_planned_workflow_of_a_mixed_source_is_valid() {
    let crontab = "\
SHELL=/bin/sh
PATH=/usr/bin:/bin
*/5 * * * * /usr/bin/curl -fsS http://localhost/health
0 9 * * 1-5 python3 /opt/jobs/report.py --daily
@weekly find /tmp -mtime +7 -delete
0 0 1 * * echo monthly
";
    let json = r#"{"tasks": [
      {"id": "etl-extract", "name": "ETL: extract", "command": "extract.sh",
       "schedule": "30 1 * * *", "tags": ["etl"], "env": {"STAGE": "x"}},
      {"id": "etl-transform", "command": "transform.sh", "depends_on": ["etl-extract"],
       "timeout_seconds": 600, "retries": 2, "image": "python:3.12-slim"},
      {"id": "etl-load", "command": "load.sh", "depends_on": ["etl-transform"]},
      {"id": "etl-report", "command": "report.sh",
       "depends_on": ["etl-transform", "etl-load"]},
      {"id": "solo", "command": "/bin/true", "schedule": "@hourly"},
      {"id": "weird name / with spaces", "name": "!!", "command": "   echo  hi  "}
    ]}"#;
    let mut tasks = parse(ImportFormat::Crontab, crontab).tasks;
    let parsed = parse(ImportFormat::Json, json);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    tasks.extend(parsed.tasks);
    assert_eq!(tasks.len(), 10);
    let p = plan(tasks, IMAGE, Some("import-1"));
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.workflows.len(), 7);
    for w in &p.workflows {
        assert!(
            validate_workflow(&w.input).is_ok(),
            "{}: {:?}",
            w.input.name,
            validate_workflow(&w.input)
        );
        assert!(w.tags.contains("import-1"));
        assert_eq!(w.step_legacy_ids.len(), w.input.steps.len());
    }
    let etl = p
        .workflows
        .iter()
        .find(|w| w.legacy_id == "etl-extract")
        .unwrap();
    assert_eq!(etl.input.steps.len(), 4);
    assert!(etl.input.name.starts_with("etl-extract-"));
    assert_eq!(etl.input.steps[1].image, "python:3.12-slim");
    let names: Vec<&str> = p.workflows.iter().map(|w| w.input.name.as_str()).collect();
    let unique: std::collections::BTreeSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
}

/// A JSON export of `n` tasks: groups of five (a root, two middles, a join, a tail) plus
/// lone scheduled tasks.
fn generated_export(n: usize) -> String {
    let mut records = Vec::with_capacity(n);
    let mut i = 0;
    while records.len() < n {
        let g = format!("g{i:04}");
        if i % 3 == 2 {
            records.push(format!(
                r#"{{"id": "{g}", "command": "echo {g}", "schedule": "{} 3 * * 1-5"}}"#,
                i % 60
            ));
        } else {
            records.push(format!(
                r#"{{"id": "{g}-root", "command": "/usr/bin/extract {g}", "schedule": "0 {} * * *", "tags": ["gen"]}}"#,
                i % 24
            ));
            for m in ["left", "right"] {
                records.push(format!(
                    r#"{{"id": "{g}-{m}", "command": "work {m}", "depends_on": ["{g}-root"], "env": {{"SIDE": "{m}"}}}}"#
                ));
            }
            records.push(format!(
                r#"{{"id": "{g}-join", "command": "join", "depends_on": ["{g}-left", "{g}-right"], "retries": 1}}"#
            ));
            records.push(format!(
                r#"{{"id": "{g}-tail", "command": "notify", "depends_on": ["{g}-join"], "timeout_seconds": 60}}"#
            ));
        }
        i += 1;
    }
    records.truncate(n);
    // Truncation may cut a group: keep whole groups only, so every dependency exists.
    while records
        .last()
        .is_some_and(|r| !r.contains("-tail") && r.contains("depends_on"))
    {
        records.pop();
    }
    format!("{{\"tasks\": [{}]}}", records.join(",\n"))
}

#[test]
fn five_hundred_tasks_parse_and_plan_quickly() {
    let src = generated_export(500);
    let started = Instant::now();
    let parsed = parse(ImportFormat::Json, &src);
    let parsed_in = started.elapsed();
    assert!(parsed.problems.is_empty(), "{:?}", &parsed.problems[..1]);
    let n = parsed.tasks.len();
    assert!(n >= 495, "{n}");
    let planned = plan(parsed.tasks, IMAGE, None);
    let total = started.elapsed();
    println!("{n} tasks: parsed in {parsed_in:?}, parsed and planned in {total:?}");
    assert!(planned.problems.is_empty(), "{:?}", planned.problems);
    let steps: usize = planned.workflows.iter().map(|w| w.input.steps.len()).sum();
    assert_eq!(steps, n);
    assert!(planned.workflows.iter().any(|w| w.input.steps.len() == 5));
}
