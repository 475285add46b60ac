//! Finds the line of a field path (`steps[1].dependsOn`) in a workflow file's text, so the
//! api's validation errors (`extensions.details[].field`) point at `file:line`.

use std::collections::HashMap;

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

/// The 1-based line of `path` in `text`, or of its nearest ancestor found; `None` when not
/// even the first segment is there.
pub fn line_of(text: &str, path: &str, is_json: bool) -> Option<usize> {
    let segs = segments(path);
    if is_json {
        let lines = json_lines(text);
        (1..=segs.len())
            .rev()
            .find_map(|n| lines.get(&render(&segs[..n])).copied())
    } else {
        yaml_line(text, &segs)
    }
}

fn render(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Column of the first character, and of the key after any `- ` list markers.
fn cols(line: &str) -> Option<(usize, usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let first = line.len() - trimmed.len();
    let mut rest = trimmed;
    let mut key = first;
    while rest == "-" || rest.starts_with("- ") {
        let after = rest[1..].trim_start();
        key += rest.len() - after.len();
        rest = after;
    }
    Some((first, key, rest))
}

fn is_key(rest: &str, k: &str) -> bool {
    [format!("{k}:"), format!("\"{k}\":"), format!("'{k}':")]
        .iter()
        .any(|p| rest.starts_with(p.as_str()))
}

/// Walks the document by indentation: a key among the shallowest keys of the current block,
/// an index among the shallowest `- ` items.
fn yaml_line(text: &str, segs: &[Seg]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut start, mut end) = (0, lines.len());
    let mut found: Option<usize> = None;
    for seg in segs {
        let body: Vec<(usize, usize, usize, &str)> = (start..end)
            .filter_map(|i| cols(lines[i]).map(|(f, k, r)| (i, f, k, r)))
            .collect();
        let hit = match seg {
            Seg::Key(k) => {
                let Some(col) = body.iter().map(|b| b.2).min() else {
                    break;
                };
                body.iter()
                    .find(|b| b.2 == col && is_key(b.3, k))
                    .map(|b| (b.0, col))
            }
            Seg::Index(n) => {
                let items: Vec<_> = body
                    .iter()
                    .filter(|b| b.2 > b.1 && lines[b.0][b.1..].starts_with('-'))
                    .collect();
                let Some(col) = items.iter().map(|b| b.1).min() else {
                    break;
                };
                items
                    .iter()
                    .filter(|b| b.1 == col)
                    .nth(*n)
                    .map(|b| (b.0, col))
            }
        };
        let Some((line, col)) = hit else { break };
        found = Some(line + 1);
        let next = (line + 1..end)
            .find(|&i| cols(lines[i]).is_some_and(|(f, _, _)| f <= col))
            .unwrap_or(end);
        // A key's block starts below it; an item's block includes its own line (`- name: x`).
        start = if matches!(seg, Seg::Key(_)) {
            line + 1
        } else {
            line
        };
        end = next;
    }
    found
}

enum Ctx {
    Obj {
        key: Option<String>,
        expect_key: bool,
    },
    Arr {
        idx: usize,
        started: bool,
    },
}

fn path_of(stack: &[Ctx]) -> String {
    let mut s = String::new();
    for c in stack {
        match c {
            Ctx::Obj { key: Some(k), .. } if s.is_empty() => s.push_str(k),
            Ctx::Obj { key: Some(k), .. } => {
                s.push('.');
                s.push_str(k);
            }
            Ctx::Obj { key: None, .. } => {}
            Ctx::Arr { idx, .. } => s.push_str(&format!("[{idx}]")),
        }
    }
    s
}

/// The first line of every key and array element of a JSON document, by path.
fn json_lines(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut stack: Vec<Ctx> = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            continue;
        }
        if c.is_whitespace() || c == ':' {
            continue;
        }
        // The start of a value inside an array marks the element's line.
        if let Some(Ctx::Arr { started, .. }) = stack.last_mut()
            && !*started
            && !matches!(c, ',' | ']')
        {
            *started = true;
            out.entry(path_of(&stack)).or_insert(line);
        }
        match c {
            '"' => {
                let mut s = String::new();
                while let Some(ch) = chars.next() {
                    match ch {
                        '\\' => {
                            if let Some(esc) = chars.next() {
                                s.push(esc);
                            }
                        }
                        '"' => break,
                        '\n' => line += 1,
                        other => s.push(other),
                    }
                }
                if let Some(Ctx::Obj { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = Some(s);
                    *expect_key = false;
                    out.entry(path_of(&stack)).or_insert(line);
                }
            }
            '{' => stack.push(Ctx::Obj {
                key: None,
                expect_key: true,
            }),
            '[' => stack.push(Ctx::Arr {
                idx: 0,
                started: false,
            }),
            '}' | ']' => {
                stack.pop();
            }
            ',' => match stack.last_mut() {
                Some(Ctx::Obj { expect_key, .. }) => *expect_key = true,
                Some(Ctx::Arr { idx, started }) => {
                    *idx += 1;
                    *started = false;
                }
                None => {}
            },
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
name: demo
# a comment
steps:
  - name: one
    image: alpine
    run: |
      name: not-a-key
  - image: alpine
    name: two
    dependsOn: [one, three]
schedule:
  cron: '0 2 * * *'
";

    #[test]
    fn yaml_paths_find_their_lines() {
        assert_eq!(line_of(YAML, "name", false), Some(1));
        assert_eq!(line_of(YAML, "steps", false), Some(3));
        assert_eq!(line_of(YAML, "steps[0].name", false), Some(4));
        assert_eq!(line_of(YAML, "steps[1]", false), Some(8));
        assert_eq!(line_of(YAML, "steps[1].name", false), Some(9));
        assert_eq!(line_of(YAML, "steps[1].dependsOn", false), Some(10));
        assert_eq!(line_of(YAML, "steps[1].timeoutSeconds", false), Some(8));
        assert_eq!(line_of(YAML, "schedule.cron", false), Some(12));
    }

    #[test]
    fn json_paths_find_their_lines() {
        let text = "{\n  \"name\": \"demo\",\n  \"steps\": [\n    {\"name\": \"one\", \"image\": \"a\"},\n    {\n      \"name\": \"two\",\n      \"dependsOn\": [\"x\"]\n    }\n  ]\n}\n";
        assert_eq!(line_of(text, "name", true), Some(2));
        assert_eq!(line_of(text, "steps[0].image", true), Some(4));
        assert_eq!(line_of(text, "steps[1]", true), Some(5));
        assert_eq!(line_of(text, "steps[1].dependsOn", true), Some(7));
        assert_eq!(line_of(text, "steps[1].retries", true), Some(5));
    }
}
