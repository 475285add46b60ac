//! `docs/reference/errors.md`, rendered from the error table (`tms_core::ErrorCode`).

use std::fmt::Write as _;

use tms_core::ErrorCode;

use super::{Doc, banner};

const INTRO: &str = "\
# Error codes

Every error the API returns carries a stable `extensions.code`; clients switch on it, never on
the message. On `/graphql` errors come in the response's `errors` list with HTTP 200, as
GraphQL over HTTP does (a request body that is not GraphQL at all gets 400). The plain-HTTP
JSON endpoints (`/auth/*`, `GET /runs/{id}/steps/{name}/log`) answer
`{\"errors\": [{\"message\", \"extensions\": {\"code\"}}]}` with the HTTP status below. Messages
never carry internal details (SQL, host names, causes): those are in the api's log.
";

/// Renders the reference.
pub fn render() -> String {
    let mut out = banner(Doc::Errors, "the error table (`core/src/error/codes.rs`)");
    out.push_str(INTRO);
    out.push_str("\n| code | HTTP status | meaning |\n| --- | --- | --- |\n");
    for code in ErrorCode::ALL {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            code.as_str(),
            code.as_str().to_ascii_lowercase(),
            code.http_status(),
            super::md_text(&first_sentence(code.doc().meaning))
        );
    }
    for code in ErrorCode::ALL {
        let doc = code.doc();
        let _ = write!(
            out,
            "\n## {}\n\n{}\n\n- **Message:** {}\n- **HTTP status** (plain-HTTP endpoints): {}\n- **When:** {}\n",
            code.as_str(),
            super::md_text(doc.meaning),
            super::md_text(doc.message),
            code.http_status(),
            super::md_text(doc.when)
        );
    }
    out
}

/// The meaning up to its first `;` (else its first `. `), for the summary table.
fn first_sentence(text: &str) -> String {
    match text.find("; ").or_else(|| text.find(". ")) {
        Some(i) => format!("{}.", &text[..i]),
        None => text.to_string(),
    }
}
