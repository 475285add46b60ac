//! The generated references under `docs/reference/`: each is rendered from the one definition it
//! documents (the schema, the error table, the configuration flags) by `tms-api print-docs`, and
//! a test fails when a committed file differs from what would be generated now.

pub mod api_md;
pub mod config_md;
pub mod errors_md;

/// Which reference `tms-api print-docs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Doc {
    /// `docs/reference/api.md`: every type, field and argument of the GraphQL schema.
    Api,
    /// `docs/reference/errors.md`: every `extensions.code`.
    Errors,
    /// `docs/reference/config.md`: every setting of `tms-api` and `tms-worker`.
    Config,
}

impl Doc {
    pub const ALL: [Doc; 3] = [Doc::Api, Doc::Errors, Doc::Config];

    /// The file's path from the repository root.
    pub fn path(self) -> &'static str {
        match self {
            Doc::Api => "docs/reference/api.md",
            Doc::Errors => "docs/reference/errors.md",
            Doc::Config => "docs/reference/config.md",
        }
    }

    /// The command that regenerates the file.
    pub fn command(self) -> String {
        let arg = match self {
            Doc::Api => "api",
            Doc::Errors => "errors",
            Doc::Config => "config",
        };
        format!(
            "cargo run -q -p tms-api -- print-docs {arg} > {}",
            self.path()
        )
    }

    /// The file's content as of this build.
    pub fn render(self) -> String {
        match self {
            Doc::Api => api_md::render(&crate::graphql::sdl()),
            Doc::Errors => errors_md::render(),
            Doc::Config => config_md::render(),
        }
    }
}

/// Prose for Markdown: `<` outside code spans becomes `&lt;` (a `<tmp>` would otherwise be
/// swallowed as an HTML tag), and a `|` outside code spans is escaped for table cells.
fn md_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '<' if !in_code => out.push_str("&lt;"),
            '|' if !in_code => out.push_str("\\|"),
            _ => out.push(c),
        }
    }
    out
}

/// The first lines of every generated file: where it comes from and how to regenerate it.
fn banner(doc: Doc, source: &str) -> String {
    format!(
        "<!-- Generated from {source} by `tms-api print-docs`; do not edit.\n     Regenerate: {} -->\n\n",
        doc.command()
    )
}

#[cfg(test)]
mod tests {
    use super::Doc;

    fn committed(doc: Doc) -> &'static str {
        match doc {
            Doc::Api => include_str!("../../../docs/reference/api.md"),
            Doc::Errors => include_str!("../../../docs/reference/errors.md"),
            Doc::Config => include_str!("../../../docs/reference/config.md"),
        }
    }

    #[test]
    fn committed_references_are_current() {
        let stale: Vec<String> = Doc::ALL
            .into_iter()
            .filter(|d| committed(*d) != d.render())
            .map(|d| format!("{} is stale: run `{}`", d.path(), d.command()))
            .collect();
        assert!(stale.is_empty(), "{}", stale.join("\n"));
    }
}
