//! After an import, through the real api: schedules enabled in phases, a verification that
//! finds a workflow edited by hand, and rollbacks that restore the exact prior state.

use serde_json::{Value, json};
use tms_tests::services::psql;
use tms_tests::{TestEnv, error_code};

/// `n` scheduled lone tasks, half tagged `red`; `changed` ones get another command.
fn source(n: usize, changed: &[usize]) -> String {
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            let cmd = if changed.contains(&i) {
                format!("job {i} --v2")
            } else {
                format!("job {i}")
            };
            let tags = if i % 2 == 0 {
                json!(["red"])
            } else {
                json!(["blue"])
            };
            json!({"id": format!("t{i:02}"), "command": cmd, "schedule": "0 3 * * *", "tags": tags})
        })
        .collect();
    json!({ "tasks": tasks }).to_string()
}

async fn apply(env: &TestEnv, content: &str) -> anyhow::Result<String> {
    let d = env
        .gql(
            "mutation($c:String!){importTasks(input:{format:JSON,content:$c}){batch{id}}}",
            json!({"c": content}),
        )
        .await?;
    Ok(d["importTasks"]["batch"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn phase(
    env: &TestEnv,
    batch: &str,
    tag: Option<&str>,
    share: Option<f64>,
) -> anyhow::Result<Vec<String>> {
    let d = env
        .gql(
            "mutation($b:ID!,$t:String,$s:Float){enableImportPhase(batchId:$b,tag:$t,share:$s){batchId enabled}}",
            json!({"b": batch, "t": tag, "s": share}),
        )
        .await?;
    Ok(serde_json::from_value(
        d["enableImportPhase"]["enabled"].clone(),
    )?)
}

fn enabled_count(env: &TestEnv) -> anyhow::Result<usize> {
    let n = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM workflows WHERE schedule_enabled",
        ],
    )?;
    Ok(n.trim().parse()?)
}

/// The workflows and their versions, row by row, as text.
fn dump(env: &TestEnv) -> anyhow::Result<String> {
    psql(
        &env.database_url,
        &[
            "-c",
            "SELECT row_to_json(w)::text FROM workflows w ORDER BY id; \
             SELECT row_to_json(v)::text FROM workflow_versions v ORDER BY workflow_id, version",
        ],
    )
}

#[tokio::test]
async fn phases_enable_exactly_the_chosen_schedules() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let batch = apply(&env, &source(20, &[])).await?;
    assert_eq!(
        enabled_count(&env)?,
        0,
        "imported schedules arrive disabled"
    );

    let quarter = phase(&env, &batch, None, Some(0.25)).await?;
    assert_eq!(quarter.len(), 5, "{quarter:?}");
    assert_eq!(enabled_count(&env)?, 5);
    assert!(
        phase(&env, &batch, None, Some(0.25)).await?.is_empty(),
        "the same share twice enables nothing new"
    );
    let half = phase(&env, &batch, None, Some(0.5)).await?;
    assert_eq!(half.len(), 5, "the next quarter: {half:?}");
    assert!(half.iter().all(|h| !quarter.contains(h)));

    let red = phase(&env, &batch, Some("red"), None).await?;
    let red_enabled = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM workflows WHERE schedule_enabled AND import_meta->'tags' ? 'red'",
        ],
    )?;
    assert_eq!(
        red_enabled.trim(),
        "10",
        "every red schedule is on after the tag phase ({red:?})"
    );
    phase(&env, &batch, None, None).await?;
    assert_eq!(enabled_count(&env)?, 20);

    let bad = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($b:ID!){enableImportPhase(batchId:$b,share:1.5){enabled}}",
            json!({"b": batch}),
        )
        .await?;
    assert_eq!(error_code(&bad), "VALIDATION", "{bad}");
    Ok(())
}

#[tokio::test]
async fn verify_finds_a_workflow_edited_after_the_import() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let src = source(6, &[]);
    let batch = apply(&env, &src).await?;
    let verify = "mutation($b:ID!,$c:String!){verifyImport(batchId:$b,content:$c){ok differences{legacyId kind detail}}}";
    let v = env.gql(verify, json!({"b": batch, "c": src})).await?;
    assert_eq!(v["verifyImport"], json!({"ok": true, "differences": []}));

    // Someone edits t03's workflow by hand.
    let wfs = env
        .gql(
            "{workflows(first:20){edges{node{id name legacyId steps{name image run}}}}}",
            json!({}),
        )
        .await?;
    let node = wfs["workflows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["legacyId"] == "t03")
        .unwrap()
        .clone();
    let mut step = node["steps"][0].clone();
    step["run"] = json!("job 3 --tampered");
    env.gql(
        "mutation($id:ID!,$i:WorkflowInput!){updateWorkflow(id:$id,input:$i){id}}",
        json!({"id": node["id"], "i": {"name": node["name"], "steps": [step],
            "schedule": {"cron": "0 3 * * *", "enabled": false}}}),
    )
    .await?;
    let v = env.gql(verify, json!({"b": batch, "c": src})).await?;
    let diffs = &v["verifyImport"]["differences"];
    assert_eq!(v["verifyImport"]["ok"], false, "{v}");
    assert_eq!(diffs.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        (diffs[0]["legacyId"].clone(), diffs[0]["kind"].clone()),
        (json!("t03"), json!("CHANGED")),
        "{v}"
    );
    assert!(
        diffs[0]["detail"].as_str().unwrap().contains("command"),
        "{v}"
    );

    // A source with one task less and one more: EXTRA and MISSING.
    let other = json!({"tasks": (0..7).filter(|i| *i != 2).map(|i| json!({"id": format!("t{i:02}"),
        "command": format!("job {i}"), "schedule": "0 3 * * *", "tags": if i % 2 == 0 { json!(["red"]) } else { json!(["blue"]) }}))
        .collect::<Vec<_>>()}).to_string();
    let v = env.gql(verify, json!({"b": batch, "c": other})).await?;
    let kinds: Vec<(String, String)> = v["verifyImport"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["legacyId"].as_str().unwrap().into(),
                d["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(kinds.contains(&("t02".into(), "EXTRA".into())), "{v}");
    assert!(kinds.contains(&("t06".into(), "MISSING".into())), "{v}");
    Ok(())
}

#[tokio::test]
async fn rollback_restores_the_exact_prior_state() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    env.create_workflow(
        "hand-made",
        json!([{"name": "a", "image": "alpine", "run": "true"}]),
    )
    .await?;
    let before_all = dump(&env)?;
    let b1 = apply(&env, &source(8, &[])).await?;
    phase(&env, &b1, Some("red"), None).await?;
    let after_b1 = dump(&env)?;

    let b2 = apply(&env, &source(8, &[1, 4])).await?;
    assert_ne!(dump(&env)?, after_b1);
    // b1 cannot be rolled back while b2 changed its workflows.
    let refused = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($b:ID!){rollbackImport(batchId:$b){id}}",
            json!({"b": b1}),
        )
        .await?;
    assert_eq!(error_code(&refused), "CONFLICT", "{refused}");
    assert!(
        refused["errors"].to_string().contains(&b2),
        "the later batch is named: {refused}"
    );

    let r = env
        .gql(
            "mutation($b:ID!){rollbackImport(batchId:$b){id status}}",
            json!({"b": b2}),
        )
        .await?;
    assert_eq!(r["rollbackImport"]["status"], "ROLLED_BACK");
    assert_eq!(
        dump(&env)?,
        after_b1,
        "rolling back b2 restores the state after b1 exactly"
    );

    env.gql(
        "mutation($b:ID!){rollbackImport(batchId:$b){status}}",
        json!({"b": b1}),
    )
    .await?;
    assert_eq!(
        dump(&env)?,
        before_all,
        "rolling back b1 restores the state before any import"
    );
    let again = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($b:ID!){rollbackImport(batchId:$b){id}}",
            json!({"b": b1}),
        )
        .await?;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");

    // A workflow that ran is archived (its history stays), the others disappear.
    let b3 = apply(&env, &source(3, &[])).await?;
    phase(&env, &b3, None, None).await?;
    let wfs = env
        .gql("{workflows(first:20){edges{node{id legacyId}}}}", json!({}))
        .await?;
    let ran = wfs["workflows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["legacyId"] == "t01")
        .unwrap()["node"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = env.trigger(&ran).await?;
    env.wait_run(&run, std::time::Duration::from_secs(60))
        .await?;
    env.gql(
        "mutation($b:ID!){rollbackImport(batchId:$b){status}}",
        json!({"b": b3}),
    )
    .await?;
    let left = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT name, legacy_id IS NOT NULL, archived_at IS NOT NULL, schedule_enabled FROM workflows ORDER BY name",
        ],
    )?;
    let lines: Vec<&str> = left.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the hand-made workflow and the one that ran: {left}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("hand-made|f|f|f")),
        "{left}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("|t|t|f")),
        "the imported one that ran is archived and off: {left}"
    );
    let runs = psql(&env.database_url, &["-c", "SELECT count(*) FROM runs"])?;
    assert_eq!(runs.trim(), "1", "run history stays");

    // Importing the same tasks again brings the archived workflow back (as an update); rolling
    // that back archives it again, exactly as it was.
    let archived = dump(&env)?;
    let b4 = apply(&env, &source(3, &[])).await?;
    let back = psql(
        &env.database_url,
        &[
            "-c",
            "SELECT archived_at IS NULL FROM workflows WHERE legacy_id = 't01'",
        ],
    )?;
    assert_eq!(back.trim(), "t", "re-imported workflow is active again");
    env.gql(
        "mutation($b:ID!){rollbackImport(batchId:$b){status}}",
        json!({"b": b4}),
    )
    .await?;
    let after = dump(&env)?;
    let legacy = |d: &str| {
        d.lines()
            .filter(|l| l.contains("\"legacy_id\":\"t01\""))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        legacy(&after),
        legacy(&archived),
        "t01 is archived again, as it was"
    );
    Ok(())
}
