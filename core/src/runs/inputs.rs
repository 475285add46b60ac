//! How a run's inputs reach its steps: the whole object as a JSON file (`$TMS_INPUTS`), and
//! each top-level scalar as a `TMS_INPUT_<KEY>` variable. The variable names are checked when
//! the run is triggered, so a step never meets a name its shell cannot use.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::FieldError;

/// Longest key that becomes a variable.
const MAX_KEY_LEN: usize = 64;

/// The `TMS_INPUT_<KEY>` variables of `inputs` (a JSON object): strings as they are, numbers and
/// booleans as JSON text; `null`, arrays and objects only in the file. Every key that cannot
/// become a variable name (or that collides with another once upper-cased) is a problem at
/// `inputs.<key>`.
pub fn env_vars(inputs: &Value) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    let Some(obj) = inputs.as_object() else {
        return Ok(vars);
    };
    for (key, value) in obj {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        let field = format!("inputs.{key}");
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            problems.push(FieldError::new(
                field,
                format!(
                    "a scalar input becomes the variable TMS_INPUT_<KEY>, so its key must be 1-{MAX_KEY_LEN} letters, digits or underscores, not starting with a digit (or nest it in an object)"
                ),
            ));
            continue;
        }
        let name = format!("TMS_INPUT_{}", key.to_ascii_uppercase());
        if text.contains('\0') {
            problems.push(FieldError::new(field, "must not contain a NUL character"));
        } else if vars.insert(name.clone(), text).is_some() {
            problems.push(FieldError::new(
                field,
                format!("another key also becomes {name}; keys must differ in more than case"),
            ));
        }
    }
    if problems.is_empty() {
        Ok(vars)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_become_variables() {
        let v = env_vars(&json!({"name": "x y", "n": 3, "ok": true, "deep": {"a": 1}, "z": null}))
            .unwrap();
        assert_eq!(
            v,
            BTreeMap::from([
                ("TMS_INPUT_NAME".to_string(), "x y".to_string()),
                ("TMS_INPUT_N".to_string(), "3".to_string()),
                ("TMS_INPUT_OK".to_string(), "true".to_string()),
            ])
        );
    }

    #[test]
    fn bad_names_are_reported_each_with_its_path() {
        let e = env_vars(&json!({"my-key": 1, "1a": "x", "A": 1, "a": 2, "nested-ok": {}}))
            .unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"inputs.my-key"), "{e:?}");
        assert!(fields.contains(&"inputs.1a"), "{e:?}");
        assert!(
            fields.contains(&"inputs.a") || fields.contains(&"inputs.A"),
            "{e:?}"
        );
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
