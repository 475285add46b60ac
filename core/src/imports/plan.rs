//! Planning legacy tasks as workflows.
//!
//! Tasks connected by `depends_on` (in either direction) form a group; each group becomes one
//! workflow whose steps are its tasks, and a lone task a one-step workflow. A group is left
//! out (all its ids in [`Planned::skipped`], with a problem) when a task depends on an id that
//! is not in the source, when its dependencies form a cycle, when it has a schedule on a task
//! that is not a root (a task without dependencies) or two scheduled roots, or when the
//! resulting workflow would not pass workflow validation (e.g. more than 200 steps).
//!
//! Names are stable: a workflow is named after its root task (the one whose id is the
//! workflow's legacy id: the smallest root id) and a step after its task — the task's `name`
//! when given, else its command's first word (basename) and the next word — slugified to
//! `[a-z0-9-]`, truncated, and suffixed with `-` and 8 hex digits of SHA-256 of the legacy id.
//! So a name depends only on its own task, never on the rest of the file, and stays within 63
//! characters (a step name's limit; a workflow name's is 100).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::model::{LegacyTask, Planned, PlannedWorkflow, Problem};
use super::names::{base_name, hashed_name};
use crate::workflows::validate::validate_workflow;
use crate::workflows::{ScheduleInput, StepSpec, WorkflowInput};

/// Plans `tasks` as workflows. Steps without an image use `default_image`; `tag` is added to
/// every workflow's tags. The output is ordered by legacy id and does not depend on the order
/// of `tasks`.
pub fn plan(tasks: Vec<LegacyTask>, default_image: &str, tag: Option<&str>) -> Planned {
    let mut tasks = tasks;
    tasks.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.position.cmp(&b.position)));
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut duplicates: Vec<usize> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        if index.contains_key(t.id.as_str()) {
            duplicates.push(i);
        } else {
            index.insert(t.id.as_str(), i);
        }
    }

    // Undirected connectivity (union-find over known ids; duplicates join their first).
    let mut parent: Vec<usize> = (0..tasks.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (i, t) in tasks.iter().enumerate() {
        let own = index[t.id.as_str()];
        let links = std::iter::once(own).chain(
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied()),
        );
        for j in links {
            let (a, b) = (find(&mut parent, i), find(&mut parent, j));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    // Groups keyed by their smallest member (tasks are sorted, so by smallest id).
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..tasks.len() {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }

    let mut out = Planned::default();
    for members in groups.values() {
        let mut problems = group_problems(&tasks, members, &index, &duplicates);
        let mut workflow = None;
        if problems.is_empty() {
            match build(&tasks, members, &index, default_image, tag) {
                Ok(w) => workflow = Some(w),
                Err(p) => problems.push(p),
            }
        }
        match workflow {
            Some(w) => out.workflows.push(w),
            None => {
                out.problems.append(&mut problems);
                out.skipped
                    .extend(members.iter().map(|&i| tasks[i].id.clone()));
            }
        }
    }
    out.workflows.sort_by(|a, b| a.legacy_id.cmp(&b.legacy_id));
    out.skipped.sort();
    out.skipped.dedup();
    out
}

fn problem(t: &LegacyTask, reason: String) -> Problem {
    Problem {
        position: t.position.clone(),
        reason,
        legacy_id: Some(t.id.clone()),
    }
}

/// Duplicate ids, dangling dependencies, cycles and misplaced schedules in one group.
fn group_problems(
    tasks: &[LegacyTask],
    members: &[usize],
    index: &HashMap<&str, usize>,
    duplicates: &[usize],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ids = || {
        members
            .iter()
            .map(|&i| tasks[i].id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for &i in members {
        let t = &tasks[i];
        if duplicates.contains(&i) {
            problems.push(problem(t, format!("duplicate id `{}`", t.id)));
        }
        for d in &t.depends_on {
            if !index.contains_key(d.as_str()) {
                problems.push(problem(
                    t,
                    format!(
                        "depends on `{d}`, which is not in the source; its group ({}) is \
                         skipped",
                        ids()
                    ),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    if let Some(cycle) = find_cycle(tasks, members, index) {
        let first = &tasks[index[cycle[0].as_str()]];
        problems.push(problem(
            first,
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
        return problems;
    }
    let scheduled: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| tasks[i].schedule.is_some())
        .collect();
    for &i in &scheduled {
        let t = &tasks[i];
        if !t.depends_on.is_empty() {
            problems.push(problem(
                t,
                format!(
                    "task `{}` has a schedule but depends on other tasks: a group is scheduled \
                     by its root's schedule only",
                    t.id
                ),
            ));
        }
    }
    let roots: Vec<&str> = scheduled
        .iter()
        .filter(|&&i| tasks[i].depends_on.is_empty())
        .map(|&i| tasks[i].id.as_str())
        .collect();
    if roots.len() > 1 {
        let t = &tasks[index[roots[1]]];
        problems.push(problem(
            t,
            format!(
                "the group has several scheduled roots ({}): a workflow has one schedule",
                roots.join(", ")
            ),
        ));
    }
    problems
}

/// A cycle as ids in order (`a -> b -> a`, following `depends_on`), if any.
fn find_cycle(
    tasks: &[LegacyTask],
    members: &[usize],
    index: &HashMap<&str, usize>,
) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done. Iterative to survive long chains.
    let mut state: HashMap<usize, u8> = members.iter().map(|&i| (i, 0)).collect();
    for &start in members {
        if state[&start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state.insert(start, 1);
        while let Some(&mut (n, ref mut next)) = stack.last_mut() {
            if let Some(dep) = tasks[n].depends_on.get(*next) {
                *next += 1;
                let d = index[dep.as_str()];
                match state[&d] {
                    1 => {
                        let from = stack.iter().position(|&(p, _)| p == d).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(p, _)| tasks[p].id.clone())
                            .collect();
                        cycle.push(tasks[d].id.clone());
                        return Some(cycle);
                    }
                    0 => {
                        state.insert(d, 1);
                        stack.push((d, 0));
                    }
                    _ => {}
                }
            } else {
                state.insert(n, 2);
                stack.pop();
            }
        }
    }
    None
}

/// The canonical form of a task (every field but its position; sets sorted): what its
/// checksum covers.
pub fn canonical_task(t: &LegacyTask) -> String {
    let mut tags = t.tags.clone();
    tags.sort();
    tags.dedup();
    let mut deps = t.depends_on.clone();
    deps.sort();
    deps.dedup();
    // A BTreeMap serializes its keys sorted, whatever serde_json's map type is.
    let fields: BTreeMap<&str, Value> = BTreeMap::from([
        ("command", json!(t.command)),
        ("depends_on", json!(deps)),
        ("env", json!(t.env)),
        ("id", json!(t.id)),
        ("image", json!(t.image)),
        ("name", json!(t.name)),
        ("retries", json!(t.retries)),
        ("schedule", json!(t.schedule)),
        ("tags", json!(tags)),
        ("timeout_seconds", json!(t.timeout_seconds)),
    ]);
    serde_json::to_string(&fields).expect("a map of JSON values serializes")
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The workflow of a problem-free group, or the problem validation found.
fn build(
    tasks: &[LegacyTask],
    members: &[usize],
    index: &HashMap<&str, usize>,
    default_image: &str,
    tag: Option<&str>,
) -> Result<PlannedWorkflow, Problem> {
    let root = members
        .iter()
        .copied()
        .find(|&i| tasks[i].depends_on.is_empty())
        .expect("an acyclic group has a root");
    let root_task = &tasks[root];
    let legacy_id = root_task.id.clone();
    let name = hashed_name(&base_name(root_task), &legacy_id, 8);

    let mut step_names: HashMap<usize, String> = HashMap::new();
    let mut used = BTreeSet::new();
    for &i in members {
        let base = base_name(&tasks[i]);
        let mut n = hashed_name(&base, &tasks[i].id, 8);
        if used.contains(&n) {
            n = hashed_name(&base, &tasks[i].id, 16);
        }
        used.insert(n.clone());
        step_names.insert(i, n);
    }

    // Steps in dependency order, ties broken by legacy id.
    let mut remaining: HashMap<usize, usize> = members
        .iter()
        .map(|&i| (i, tasks[i].depends_on.len()))
        .collect();
    let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in members {
        for d in &tasks[i].depends_on {
            dependents.entry(index[d.as_str()]).or_default().push(i);
        }
    }
    let mut ready: BTreeSet<usize> = members
        .iter()
        .copied()
        .filter(|i| remaining[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(members.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in dependents.get(&i).map(Vec::as_slice).unwrap_or_default() {
            let r = remaining.get_mut(&j).expect("a member");
            *r -= 1;
            if *r == 0 {
                ready.insert(j);
            }
        }
    }

    let mut steps = Vec::with_capacity(order.len());
    let mut step_legacy_ids = BTreeMap::new();
    let mut task_checksums = BTreeMap::new();
    let mut tags: BTreeSet<String> = tag.map(str::to_string).into_iter().collect();
    let mut schedule = None;
    for &i in &order {
        let t = &tasks[i];
        let mut depends_on: Vec<String> = t
            .depends_on
            .iter()
            .map(|d| step_names[&index[d.as_str()]].clone())
            .collect();
        depends_on.sort();
        steps.push(StepSpec {
            name: step_names[&i].clone(),
            image: t.image.clone().unwrap_or_else(|| default_image.to_string()),
            run: Some(t.command.clone()),
            env: t.env.clone(),
            depends_on,
            timeout_seconds: t.timeout_seconds,
            retries: t.retries,
            cache: false,
            ..Default::default()
        });
        step_legacy_ids.insert(step_names[&i].clone(), t.id.clone());
        task_checksums.insert(t.id.clone(), sha256_hex(&canonical_task(t)));
        tags.extend(t.tags.iter().cloned());
        if let Some(cron) = &t.schedule {
            schedule = Some(ScheduleInput {
                cron: cron.clone(),
                timezone: None,
                enabled: Some(false),
            });
        }
    }
    let mut sums: Vec<&String> = task_checksums.values().collect();
    sums.sort();
    let mut canonical = String::new();
    for s in sums {
        canonical.push_str(s);
        canonical.push('\n');
    }
    canonical.push_str(&name);
    let checksum = sha256_hex(&canonical);

    let input = WorkflowInput {
        name,
        description: Some(format!(
            "Imported from the legacy scheduler (root task `{}`, {} task{})",
            truncate(&legacy_id, 200),
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        )),
        steps,
        schedule,
        max_concurrent_runs: None,
        rate_limit: None,
    };
    if let Err(errs) = validate_workflow(&input) {
        let reasons: Vec<String> = errs
            .iter()
            .take(5)
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        return Err(problem(
            root_task,
            format!(
                "the planned workflow `{}` is not valid: {}",
                input.name,
                reasons.join("; ")
            ),
        ));
    }
    Ok(PlannedWorkflow {
        legacy_id,
        input,
        step_legacy_ids,
        tags,
        task_checksums,
        checksum,
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
