//! The permission-rules table (`graphql::permissions`) against the schema as built: every field
//! a client can reach (roots of all three operation types and every nested object field) has
//! exactly one rule, no rule names a field that is gone, and the `Parent` rules are only used
//! where the parent really is authorised.

use std::collections::{BTreeMap, BTreeSet};

use tms_api::graphql::permissions::{
    CONFINED, PENDING, PUBLIC_ROOTS, PUBLIC_TYPES, RULES, Rule, root_allows,
};
use tms_api::graphql::schema_walk::{SchemaWalk, walk};
use tms_core::auth::{Permission, Role};

fn schema() -> SchemaWalk {
    walk(&tms_api::graphql::sdl()).expect("the generated SDL parses")
}

fn failures(list: Vec<String>, what: &str) {
    assert!(list.is_empty(), "{what}:\n  {}", list.join("\n  "));
}

#[test]
fn every_reachable_field_has_a_rule() {
    let s = schema();
    assert!(
        s.fields.len() > 100,
        "the walk found too little: {:?}",
        s.fields
    );
    let ruled: BTreeSet<&str> = RULES.iter().map(|(f, _)| *f).collect();
    failures(
        s.fields
            .iter()
            .filter(|f| !ruled.contains(f.as_str()))
            .map(|f| format!("{f} has no rule in api/src/graphql/permissions.rs"))
            .collect(),
        "fields without a permission rule",
    );
}

#[test]
fn no_rule_is_stale_or_duplicated() {
    let s = schema();
    let mut seen = BTreeMap::new();
    let mut problems = Vec::new();
    for (f, _) in RULES {
        if seen.insert(*f, ()).is_some() {
            problems.push(format!("{f} has two rules"));
        }
        let pending = PENDING.contains(f);
        match (s.fields.contains(*f), pending) {
            (false, false) => problems.push(format!("{f} is not in the schema: remove its rule")),
            (true, true) => problems.push(format!("{f} exists now: remove it from PENDING")),
            _ => {}
        }
    }
    for p in PENDING {
        if !RULES.iter().any(|(f, _)| f == p) {
            problems.push(format!("PENDING names {p}, which has no rule"));
        }
    }
    failures(problems, "stale rules");
}

#[test]
fn roots_are_checked_and_nested_fields_inherit_or_check() {
    let s = schema();
    let mut problems = Vec::new();
    for (f, rule) in RULES.iter().filter(|(f, _)| s.fields.contains(*f)) {
        let root = s.roots.contains(*f);
        match rule {
            Rule::Parent if root => problems.push(format!("root field {f} cannot be Parent")),
            Rule::Public if !PUBLIC_ROOTS.contains(f) => {
                problems.push(format!("{f} is Public but not in PUBLIC_ROOTS"))
            }
            Rule::Authenticated if !root => {
                problems.push(format!("nested field {f}: use Parent or Requires"))
            }
            _ => {}
        }
    }
    failures(problems, "misplaced rules");
}

#[test]
fn sensitive_types_are_reached_only_from_their_roots() {
    let s = schema();
    let mut problems = Vec::new();
    for (ty, allowed) in CONFINED {
        for root in s.reached_from.get(*ty).into_iter().flatten() {
            if !allowed.contains(&root.as_str()) {
                problems.push(format!(
                    "{ty} is reachable from {root}: its Parent fields would be exposed there"
                ));
            }
        }
    }
    for root in PUBLIC_ROOTS.iter().filter(|r| s.roots.contains(**r)) {
        for (ty, roots) in &s.reached_from {
            if roots.contains(*root) && !PUBLIC_TYPES.contains(&ty.as_str()) {
                problems.push(format!("{ty} is reachable without a token (from {root})"));
            }
        }
    }
    failures(problems, "over-exposed types");
}

/// `Parent` fields under `Run` include its workflow, and the mutations return what they
/// changed: these hold only while the permissions nest as below.
#[test]
fn permissions_nest_as_the_parent_rules_assume() {
    for role in Role::ALL {
        let has = |p: Permission| p.granted_to(role);
        assert_eq!(
            has(Permission::ReadRuns),
            has(Permission::ReadWorkflows),
            "{role:?}"
        );
        assert!(
            !has(Permission::OperateRuns) || has(Permission::ReadRuns),
            "{role:?}"
        );
        assert!(
            !has(Permission::WriteWorkflows) || has(Permission::ReadWorkflows),
            "{role:?}"
        );
    }
}

/// Hand-written spot checks of the table as it should read, one per role, so that a mistake in
/// `Permission::roles()` is not silently mirrored by everything derived from it.
#[test]
fn spot_checks_per_role() {
    let cases = [
        ("Mutation.createApiToken", Some(Role::Admin), true),
        ("Mutation.updateWorkflow", Some(Role::Maintainer), true),
        ("Mutation.triggerRun", Some(Role::Maintainer), false),
        ("Mutation.cancelRun", Some(Role::Operator), true),
        ("Mutation.createWorkflow", Some(Role::Operator), false),
        ("Query.runs", Some(Role::Viewer), true),
        ("Mutation.retryRun", Some(Role::Viewer), false),
        ("Query.auditLog", Some(Role::Auditor), true),
        ("Query.runs", Some(Role::Auditor), false),
        ("Query.systemHealth", Some(Role::Monitor), true),
        ("Query.workflows", Some(Role::Monitor), false),
        ("Query.users", Some(Role::Maintainer), false),
        ("Query.me", None, false),
        ("Mutation.login", None, true),
    ];
    for (field, role, want) in cases {
        assert_eq!(root_allows(field, role), Some(want), "{field} for {role:?}");
    }
}
