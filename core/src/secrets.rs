//! Step secrets: values come from the worker's environment (`TMS_SECRET_<NAME>`), are injected
//! into the step only, and are masked in everything captured from a run.

use std::collections::BTreeMap;

/// Values shorter than this are not masked: masking `1` or `ab` would shred ordinary output
/// without protecting anything worth the name.
pub const MIN_MASKED_LEN: usize = 3;

pub const MASK: &str = "***";

/// Looks up `names`; returns the values, or the first name that is not configured.
pub fn resolve(names: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for n in names {
        match std::env::var(format!("TMS_SECRET_{n}")) {
            Ok(v) => {
                out.insert(n.clone(), v);
            }
            Err(_) => return Err(n.clone()),
        }
    }
    Ok(out)
}

/// Replaces every occurrence of a secret value in `text`.
pub fn mask(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for v in values.iter().filter(|v| v.len() >= MIN_MASKED_LEN) {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_long_values_only() {
        let values = vec!["hunter2".to_string(), "x".to_string()];
        assert_eq!(super::mask("pw=hunter2 x", &values), "pw=*** x");
    }
}
