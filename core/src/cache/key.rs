//! The step-cache key: SHA-256 over the workflow, the step's canonical definition (image,
//! command, plain env, workdir), the run's inputs and the dependencies' output manifests.
//! Secrets (names and values) never enter it. Each part is hashed on its own and kept, so
//! `explainCache` can name the part that changed.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::workflows::StepSpec;

/// Bumped whenever what goes into a key changes, so old entries simply stop matching.
const KEY_VERSION: &str = "tms-step-cache-v1";

/// A key and the hashes of its parts (`image`, `command`, `env`, `workdir`, `inputs`,
/// `output:<dependency>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub key: String,
    pub parts: BTreeMap<String, String>,
}

impl CacheKey {
    pub fn parts_json(&self) -> Value {
        serde_json::to_value(&self.parts).expect("parts serialize")
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// JSON with object keys sorted at every level, whatever the map type in use preserves.
pub fn canonical_json(v: &Value) -> String {
    // Sorting here makes the text independent of whether serde_json's `preserve_order`
    // feature is on somewhere in the build.
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The key of `step` in a run of `workflow_id` with `inputs`, given each dependency's output
/// manifest hash.
pub fn compute(
    workflow_id: Uuid,
    step: &StepSpec,
    inputs: &Value,
    dep_outputs: &BTreeMap<String, String>,
) -> CacheKey {
    let mut parts = BTreeMap::new();
    parts.insert("image".to_string(), sha(step.image.as_bytes()));
    let argv = serde_json::to_string(&step.argv()).expect("argv serializes");
    parts.insert("command".to_string(), sha(argv.as_bytes()));
    let env = serde_json::to_string(&step.env).expect("env serializes");
    parts.insert("env".to_string(), sha(env.as_bytes()));
    let workdir = step.workdir.as_deref().unwrap_or("");
    parts.insert("workdir".to_string(), sha(workdir.as_bytes()));
    parts.insert("inputs".to_string(), sha(canonical_json(inputs).as_bytes()));
    for (dep, manifest) in dep_outputs {
        parts.insert(format!("output:{dep}"), manifest.clone());
    }
    let mut h = Sha256::new();
    h.update(KEY_VERSION.as_bytes());
    h.update(b"\n");
    h.update(workflow_id.as_bytes());
    h.update(
        serde_json::to_string(&parts)
            .expect("parts serialize")
            .as_bytes(),
    );
    CacheKey {
        key: hex::encode(h.finalize()),
        parts,
    }
}

/// The parts whose hashes differ between two keys (present in either), sorted.
pub fn changed(now: &BTreeMap<String, String>, before: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = now
        .keys()
        .chain(before.keys())
        .filter(|k| now.get(*k) != before.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step() -> StepSpec {
        StepSpec {
            name: "a".into(),
            image: "alpine:3.20".into(),
            run: Some("echo hi".into()),
            env: [("K".to_string(), "v".to_string())].into(),
            secrets: vec!["TOKEN".into()],
            cache: true,
            ..Default::default()
        }
    }

    #[test]
    fn key_is_stable_and_ignores_secrets_and_input_key_order() {
        let wf = Uuid::nil();
        let deps = BTreeMap::from([("x".to_string(), "m1".to_string())]);
        let a = compute(wf, &step(), &json!({"a": 1, "b": {"c": 2, "d": 3}}), &deps);
        let b = compute(wf, &step(), &json!({"b": {"d": 3, "c": 2}, "a": 1}), &deps);
        assert_eq!(a, b);
        let mut s = step();
        s.secrets = vec!["OTHER".into()];
        s.retries = Some(3);
        assert_eq!(
            compute(wf, &s, &json!({"a": 1, "b": {"c": 2, "d": 3}}), &deps).key,
            a.key
        );
    }

    #[test]
    fn each_part_changes_the_key_and_is_named() {
        let wf = Uuid::nil();
        let deps = BTreeMap::from([("x".to_string(), "m1".to_string())]);
        let base = compute(wf, &step(), &json!({}), &deps);
        let mut s = step();
        s.run = Some("echo bye".into());
        let cmd = compute(wf, &s, &json!({}), &deps);
        assert_ne!(cmd.key, base.key);
        assert_eq!(changed(&cmd.parts, &base.parts), ["command"]);
        let inp = compute(wf, &step(), &json!({"n": 1}), &deps);
        assert_eq!(changed(&inp.parts, &base.parts), ["inputs"]);
        let d2 = BTreeMap::from([("x".to_string(), "m2".to_string())]);
        let out = compute(wf, &step(), &json!({}), &d2);
        assert_eq!(changed(&out.parts, &base.parts), ["output:x"]);
        let other_wf = compute(Uuid::from_u128(1), &step(), &json!({}), &deps);
        assert_ne!(other_wf.key, base.key, "keys are scoped to their workflow");
        assert!(changed(&other_wf.parts, &base.parts).is_empty());
    }
}
