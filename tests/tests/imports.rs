//! Imports from legacy schedulers through the real api: a large JSON export with DAG groups and
//! a crontab covering the syntax, dry runs that write nothing, idempotent re-imports, changed
//! tasks becoming new versions, malformed sources refused with positions, batches and audit.

use std::time::Instant;

use serde_json::{Value, json};
use tms_tests::services::psql;
use tms_tests::{TestEnv, error_code};

const IMPORT: &str = "mutation($i:ImportInput!){importTasks(input:$i){dryRun created updated unchanged skipped
    problems{position reason legacyId} batch{id format checksum tag status counts{tasks workflows}}}}";

/// `groups` diamonds (root scheduled, 4 tasks each) and `lone` scheduled single tasks.
fn export(groups: usize, lone: usize, changed: &[&str]) -> Value {
    let mut tasks = Vec::new();
    let cmd = |id: &str| {
        let base = format!("/opt/jobs/run.sh {id}");
        if changed.contains(&id) {
            format!("{base} --changed")
        } else {
            base
        }
    };
    for g in 0..groups {
        let id = |n: usize| format!("g{g:03}-t{n}");
        tasks.push(json!({"id": id(0), "name": format!("extract {g}"), "command": cmd(&id(0)),
                          "schedule": format!("{} 2 * * 1-5", g % 60), "tags": ["etl", format!("team-{}", g % 4)]}));
        tasks.push(
            json!({"id": id(1), "command": cmd(&id(1)), "depends_on": [id(0)], "retries": 2}),
        );
        tasks.push(
            json!({"id": id(2), "command": cmd(&id(2)), "depends_on": [id(0)],
                          "env": {"MODE": "fast"}, "timeout_seconds": 600}),
        );
        tasks.push(
            json!({"id": id(3), "image": "postgres:16", "command": cmd(&id(3)),
                          "depends_on": [id(1), id(2)]}),
        );
    }
    for l in 0..lone {
        let id = format!("lone-{l:03}");
        tasks.push(
            json!({"id": id, "command": cmd(&id), "schedule": "*/15 * * * *", "tags": ["misc"]}),
        );
    }
    json!({ "tasks": tasks })
}

async fn import(env: &TestEnv, format: &str, content: &str, extra: Value) -> anyhow::Result<Value> {
    let mut input = json!({"format": format, "content": content});
    input
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let resp = env
        .gql_raw(env.token.as_deref(), IMPORT, json!({ "i": input }))
        .await?;
    Ok(resp)
}

/// Row counts of every table an import may write.
fn counts(env: &TestEnv) -> anyhow::Result<String> {
    psql(
        &env.database_url,
        &[
            "-c",
            "SELECT (SELECT count(*) FROM workflows), (SELECT count(*) FROM workflow_versions), \
             (SELECT count(*) FROM import_batches), (SELECT count(*) FROM import_batch_workflows), \
             (SELECT count(*) FROM audit_log WHERE action::text LIKE 'import.%')",
        ],
    )
}

#[tokio::test]
async fn a_large_export_imports_as_disabled_workflows_idempotently() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let source = export(100, 100, &[]).to_string();
    let before = counts(&env)?;

    let started = Instant::now();
    let dry = import(&env, "JSON", &source, json!({"dryRun": true})).await?;
    println!("dry run of 500 tasks: {:?}", started.elapsed());
    let r = &dry["data"]["importTasks"];
    assert_eq!(r["dryRun"], true, "{dry}");
    assert_eq!(r["created"].as_array().map(Vec::len), Some(200), "{r}");
    assert_eq!(r["batch"], Value::Null);
    assert_eq!(counts(&env)?, before, "a dry run writes nothing");

    let started = Instant::now();
    let applied = import(&env, "JSON", &source, json!({"tag": "wave-1"})).await?;
    println!("apply of 500 tasks: {:?}", started.elapsed());
    let r = &applied["data"]["importTasks"];
    assert_eq!(
        r["created"].as_array().map(Vec::len),
        Some(200),
        "{applied}"
    );
    assert_eq!(
        r["batch"]["counts"],
        json!({"tasks": 500, "workflows": 200})
    );
    assert_eq!(r["batch"]["status"], "APPLIED");
    assert_eq!(r["batch"]["tag"], "wave-1");

    // A group became one workflow with four steps, its schedule imported disabled.
    let wfs = env
        .gql(
            "{workflows(first:100){edges{node{name legacyId steps{name dependsOn image} schedule{cron enabled}}}}}",
            json!({}),
        )
        .await?;
    let group = wfs["workflows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["legacyId"] == "g007-t0")
        .unwrap_or_else(|| panic!("no workflow for g007-t0: {wfs}"));
    assert_eq!(group["steps"].as_array().map(Vec::len), Some(4), "{group}");
    assert_eq!(group["schedule"]["enabled"], false, "{group}");
    let last = group["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["image"] == "postgres:16")
        .unwrap();
    assert_eq!(
        last["dependsOn"].as_array().map(Vec::len),
        Some(2),
        "{group}"
    );

    // The same file again: nothing changes, no batch.
    let after_apply = counts(&env)?;
    let again = import(&env, "JSON", &source, json!({"tag": "wave-1"})).await?;
    let r = &again["data"]["importTasks"];
    assert_eq!(
        r["unchanged"].as_array().map(Vec::len),
        Some(200),
        "{again}"
    );
    assert_eq!(
        (r["created"].clone(), r["updated"].clone()),
        (json!([]), json!([]))
    );
    assert_eq!(counts(&env)?, after_apply, "re-import is a no-op");

    // Two changed tasks in two groups: exactly two new versions.
    let changed = export(100, 100, &["g010-t2", "lone-050"]).to_string();
    let r = import(&env, "JSON", &changed, json!({})).await?;
    let r = &r["data"]["importTasks"];
    assert_eq!(r["updated"], json!(["g010-t0", "lone-050"]), "{r}");
    let versions = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM workflow_versions WHERE version = 2",
        ],
    )?;
    assert_eq!(versions.trim(), "2");

    let batches = env
        .gql(
            "{importBatches(first:10){edges{node{id status counts{tasks}}}}}",
            json!({}),
        )
        .await?;
    assert_eq!(
        batches["importBatches"]["edges"].as_array().map(Vec::len),
        Some(2),
        "{batches}"
    );
    let audit = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM audit_log WHERE action = 'import.apply'",
        ],
    )?;
    assert_eq!(audit.trim(), "2", "each applied batch is audited");
    Ok(())
}

#[tokio::test]
async fn malformed_sources_are_refused_with_positions_and_nothing_is_written() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let before = counts(&env)?;
    let bad = json!({"tasks": [
        {"id": "ok-1", "command": "true"},
        {"id": "no-command"},
        {"id": "bad-cron", "command": "true", "schedule": "61 * * * *"},
        {"id": "dangling", "command": "true", "depends_on": ["ghost"]},
    ]})
    .to_string();
    let resp = import(&env, "JSON", &bad, json!({})).await?;
    assert_eq!(error_code(&resp), "VALIDATION", "{resp}");
    let text = resp["errors"].to_string();
    assert!(
        text.contains("tasks[1]"),
        "the record's position is named: {text}"
    );
    assert!(
        text.contains("ghost"),
        "the dangling dependency is named: {text}"
    );
    assert_eq!(counts(&env)?, before, "nothing written");

    // A dry run lists the problems; skipInvalid imports the rest and records what it left out.
    let dry = import(&env, "JSON", &bad, json!({"dryRun": true})).await?;
    let problems = dry["data"]["importTasks"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(problems.len() >= 3, "{dry}");
    let skip = import(&env, "JSON", &bad, json!({"skipInvalid": true})).await?;
    let r = &skip["data"]["importTasks"];
    assert_eq!(r["created"], json!(["ok-1"]), "{skip}");
    let skipped = r["skipped"].to_string();
    for id in ["no-command", "bad-cron", "dangling"] {
        assert!(skipped.contains(id), "{id} is listed as skipped: {skip}");
    }

    let syntax = import(&env, "JSON", "{\"tasks\": [", json!({})).await?;
    assert_eq!(error_code(&syntax), "VALIDATION", "{syntax}");
    let crontab = import(
        &env,
        "CRONTAB",
        "@reboot /usr/bin/start\n* * * *\n",
        json!({}),
    )
    .await?;
    assert_eq!(error_code(&crontab), "VALIDATION", "{crontab}");
    let text = crontab["errors"].to_string();
    assert!(
        text.contains(":1") && text.contains(":2"),
        "each line is named: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_crontab_imports_each_line_as_a_one_step_workflow() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let crontab = "# nightly jobs\nMAILTO=ops@example.com\nSHELL=/bin/sh\n\n\
        0 2 * * * /usr/local/bin/backup --full\n\
        */5 9-17 * jan-jun mon-fri /usr/local/bin/poll\n\
        @daily /usr/local/bin/rotate-logs\n\
        15,45 * * * 0 /usr/local/bin/sunday-job\n";
    let resp = import(&env, "CRONTAB", crontab, json!({})).await?;
    let r = &resp["data"]["importTasks"];
    assert_eq!(r["created"].as_array().map(Vec::len), Some(4), "{resp}");
    assert_eq!(r["batch"]["format"], "CRONTAB");
    let wfs = env
        .gql("{workflows(first:10){edges{node{legacyId steps{run env{name value}} schedule{cron enabled}}}}}", json!({}))
        .await?;
    let nodes: Vec<&Value> = wfs["workflows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes.len(), 4, "{wfs}");
    for n in &nodes {
        assert_eq!(n["steps"].as_array().map(Vec::len), Some(1), "{n}");
        assert_eq!(n["schedule"]["enabled"], false, "{n}");
        assert!(n["legacyId"].as_str().unwrap().starts_with("cron-"), "{n}");
        assert!(
            n["steps"][0]["env"].to_string().contains("MAILTO"),
            "environment lines apply: {n}"
        );
    }
    Ok(())
}

/// 200 lines: every schedule form (ranges, steps, lists, names, macros, numbered days of the
/// week), environment lines, comments and blank lines.
fn big_crontab() -> (String, usize) {
    let forms = [
        "0 2 * * *",
        "*/5 * * * *",
        "0 9-17 * * MON-FRI",
        "15,45 8-18/2 * * *",
        "0 0 1 jan,jul *",
        "30 4 * * 1-5",
        "0 */6 * * 0",
        "0 12 * * 7",
        "5 3 * * 1-5/2",
        "0 22 * * sat,sun",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@midnight",
        "0 6 1-15 * *",
        "0 0 * feb-apr *",
    ];
    let mut lines = vec!["# generated legacy crontab".to_string(), String::new()];
    let mut jobs = 0;
    let mut i = 0;
    while lines.len() < 200 {
        match i % 10 {
            0 => lines.push(format!("BATCH_ZONE=zone{i}")),
            1 => lines.push(format!("# job group {i}")),
            2 => lines.push(String::new()),
            _ => {
                lines.push(format!(
                    "{} /opt/legacy/job-{i}.sh --n {i}",
                    forms[i % forms.len()]
                ));
                jobs += 1;
            }
        }
        i += 1;
    }
    (lines.join("\n"), jobs)
}

#[tokio::test]
async fn a_200_line_crontab_with_every_form_imports_line_by_line() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (crontab, jobs) = big_crontab();
    assert_eq!(crontab.lines().count(), 200);
    let resp = import(&env, "CRONTAB", &crontab, json!({})).await?;
    let r = &resp["data"]["importTasks"];
    assert_eq!(r["problems"], json!([]), "{resp}");
    assert_eq!(r["created"].as_array().map(Vec::len), Some(jobs), "{resp}");
    assert_eq!(
        r["batch"]["counts"],
        json!({"tasks": jobs, "workflows": jobs})
    );
    // Numbered days of the week became names, with their crontab meaning.
    let crons = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT DISTINCT schedule_cron FROM workflows ORDER BY 1",
        ],
    )?;
    assert!(crons.contains("30 4 * * MON-FRI"), "{crons}");
    assert!(crons.contains("0 */6 * * SUN"), "0 is Sunday: {crons}");
    assert!(crons.contains("0 12 * * SUN"), "7 is Sunday too: {crons}");
    assert!(crons.contains("5 3 * * MON,WED,FRI"), "{crons}");
    // Each line got the environment lines above it, and only those.
    let env_of = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT v.spec->'steps'->0->'env'->>'BATCH_ZONE' FROM workflows w \
                 JOIN workflow_versions v ON v.workflow_id = w.id \
                 WHERE v.spec->'steps'->0->>'run' LIKE '%job-13.sh%'",
        ],
    )?;
    assert_eq!(env_of.trim(), "zone10", "{env_of}");
    let again = import(&env, "CRONTAB", &crontab, json!({})).await?;
    assert_eq!(
        again["data"]["importTasks"]["unchanged"]
            .as_array()
            .map(Vec::len),
        Some(jobs),
        "{again}"
    );
    Ok(())
}
