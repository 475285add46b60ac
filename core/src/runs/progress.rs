//! Parsing `::progress <0-100> [message]` lines that steps print to report their own progress.

/// A step's self-reported progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub percent: f64,
    pub message: Option<String>,
}

/// Returns the progress a line reports, or `None` for ordinary output. Out-of-range or malformed
/// values are ordinary output: a step cannot push nonsense into the event stream.
pub fn parse_line(line: &str) -> Option<ProgressLine> {
    let rest = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("::progress ")?;
    let rest = rest.trim_start();
    let (num, msg) = match rest.split_once(char::is_whitespace) {
        Some((n, m)) => (n, Some(m.trim())),
        None => (rest, None),
    };
    let percent: f64 = num.parse().ok()?;
    if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
        return None;
    }
    Some(ProgressLine {
        percent,
        message: msg
            .filter(|m| !m.is_empty())
            .map(|m| m.chars().take(500).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_lines_and_rejects_others() {
        assert_eq!(
            parse_line("::progress 40 copying files\n"),
            Some(ProgressLine {
                percent: 40.0,
                message: Some("copying files".into())
            })
        );
        assert_eq!(
            parse_line("::progress 100"),
            Some(ProgressLine {
                percent: 100.0,
                message: None
            })
        );
        assert_eq!(parse_line("::progress 101 nope"), None);
        assert_eq!(parse_line("::progress abc"), None);
        assert_eq!(parse_line("progress 5"), None);
    }
}
