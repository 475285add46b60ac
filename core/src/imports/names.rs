//! Names of imported workflows and steps: a slug of the task's name (or of its command's
//! first words) plus a hash of its legacy id, so a name depends only on its own task.

use sha2::{Digest, Sha256};

use super::model::LegacyTask;
use crate::workflows::validate::MAX_NAME_LEN;

/// Lower-case `[a-z0-9-]`, runs of anything else collapsed into one `-`, no `-` at the ends.
fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn basename(word: &str) -> &str {
    let w = word.trim_end_matches('/');
    w.rsplit('/').next().unwrap_or(w)
}

/// The readable part of a task's name: its `name`, else its command's first word (basename,
/// after any leading `VAR=value` assignments) and the next word.
pub(super) fn base_name(t: &LegacyTask) -> String {
    if let Some(n) = &t.name {
        let s = slugify(n);
        if !s.is_empty() {
            return s;
        }
    }
    let words: Vec<&str> = t
        .command
        .split_whitespace()
        .skip_while(|w| {
            w.split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && super::check_env_name(k).is_ok())
        })
        .take(2)
        .map(basename)
        .collect();
    let s = slugify(&words.join(" "));
    if s.is_empty() { "task".into() } else { s }
}

/// `<base>-<first `hex_len` hex of SHA-256(key)>`, at most [`MAX_NAME_LEN`] characters.
pub(super) fn hashed_name(base: &str, key: &str, hex_len: usize) -> String {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let room = MAX_NAME_LEN - hex_len - 1;
    let mut b: String = base.chars().take(room).collect();
    while b.ends_with('-') {
        b.pop();
    }
    if b.is_empty() {
        b.push_str("task");
    }
    format!("{b}-{}", &hash[..hex_len])
}
