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

/// The values of `names` that are configured (for masking; missing ones mask nothing).
pub fn values<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|n| std::env::var(format!("TMS_SECRET_{n}")).ok())
        .collect()
}

/// Replaces every occurrence of a secret value in `text`. Longer values go first (one value may
/// contain another), and each line of a multi-line value (a PEM key) is masked on its own,
/// because output is captured line by line.
pub fn mask(text: &str, values: &[String]) -> String {
    let mut needles: Vec<&str> = values
        .iter()
        .flat_map(|v| std::iter::once(v.as_str()).chain(v.lines().map(str::trim)))
        .filter(|v| v.len() >= MIN_MASKED_LEN)
        .collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    let mut out = text.to_string();
    for n in needles {
        if out.contains(n) {
            out = out.replace(n, MASK);
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

    #[test]
    fn longer_values_first_and_lines_of_multiline_values() {
        let values = vec![
            "abc".to_string(),
            "abcdef".to_string(),
            "line-one\nline-two".to_string(),
        ];
        assert_eq!(super::mask("abcdef abc", &values), "*** ***");
        assert_eq!(super::mask("got line-two here", &values), "got *** here");
    }
}
