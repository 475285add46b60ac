//! The GraphQL limits, checked on HTTP requests (batches included) by the handler and on
//! WebSocket subscriptions by an extension, before any resolver (and so any database statement)
//! runs. Every refusal carries `extensions.code = QUERY_LIMIT`, `extensions.limit`
//! naming the limit and `extensions.max` its value.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::parse_query;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, Selection, SelectionSet,
};
use async_graphql::{
    Name, Positioned, Request, Response, ServerError, ServerResult, Value, Variables,
};
use tms_core::Error;

use crate::error::to_gql;
use crate::graphql::ids::MAX_PAGE;

mod cost;

/// Deepest selection nesting accepted; the deepest legitimate console query is about 6.
pub const MAX_DEPTH: usize = 12;
/// Complexity (one per field, connection fields weighted by their page) accepted.
pub const MAX_COMPLEXITY: usize = 2_000;
/// Aliases per document: aliases are how one request multiplies an expensive field.
pub const MAX_ALIASES: usize = 30;
/// Bytes of the query string, checked before parsing so a huge document costs no parse.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Operations in one HTTP batch.
pub const MAX_BATCH: usize = 10;
/// Nesting the parser-level recursion guard accepts (fragments and lists included).
pub const MAX_RECURSIVE_DEPTH: usize = 32;
/// Directives on one field.
pub const MAX_DIRECTIVES: usize = 10;

/// The refusal for one limit, as a GraphQL error.
pub fn refusal(limit: &'static str, max: usize) -> ServerError {
    server_error(Error::query_limit(limit, max))
}

fn page_refusal() -> ServerError {
    server_error(Error::QueryLimit {
        limit: "pageSize",
        max: MAX_PAGE as usize,
        field: Some("first"),
    })
}

/// A refusal concerns the whole document, so it points at no location (rather than 0:0).
fn server_error(e: Error) -> ServerError {
    let mut err = to_gql(e).into_server_error(Default::default());
    err.locations.clear();
    err
}

/// Checks an HTTP request against every limit and leaves it parsed (so the schema does not
/// parse it again). Runs in the handler rather than in an async-graphql extension: any installed
/// extension sends every field resolution through the extension chain, which cost ~30 % of read
/// throughput.
pub fn check_request(req: &mut Request) -> ServerResult<()> {
    let doc = check_query(&req.query, &req.variables)?;
    req.set_parsed_query(doc);
    Ok(())
}

/// Every limit on one document: its size before parsing, then depth, complexity, recursion,
/// directives, aliases and page sizes, all measured here without following a fragment twice —
/// the library's own depth walk would expand nested fragment spreads exponentially.
pub fn check_query(query: &str, variables: &Variables) -> ServerResult<ExecutableDocument> {
    if query.len() > MAX_DOCUMENT_BYTES {
        return Err(refusal("documentBytes", MAX_DOCUMENT_BYTES));
    }
    let doc = parse_query(query).map_err(ServerError::from)?;
    check_parsed(&doc, variables)?;
    Ok(doc)
}

/// The limits [`check_query`] applies after parsing, for a document already parsed (a persisted
/// query: its size was checked when it was registered; the page sizes depend on this request's
/// variables).
pub fn check_parsed(doc: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    let cost = cost::measure(doc)?;
    if cost.depth > MAX_DEPTH {
        return Err(refusal("depth", MAX_DEPTH));
    }
    if cost.complexity > MAX_COMPLEXITY {
        return Err(refusal("complexity", MAX_COMPLEXITY));
    }
    check_document(doc, variables)
}

/// The schema keeps the library's depth and complexity limits as a backstop; should one of them
/// ever refuse what [`check_query`] let through, the refusal still carries its code.
pub fn backstop(mut resp: Response) -> Response {
    for err in &mut resp.errors {
        let limit = match err.message.as_str() {
            "Query is nested too deep." => refusal("depth", MAX_DEPTH),
            "Query is too complex." => refusal("complexity", MAX_COMPLEXITY),
            _ => continue,
        };
        *err = limit;
    }
    resp
}

/// Installs [`LimitsExtension`] on the WebSocket schema, whose subscribe messages the protocol
/// machine executes without a hook of ours.
pub struct Limits;

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsExtension)
    }
}

pub struct LimitsExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for LimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // Checked before the library parses: its recursion check is what must not run on an
        // unchecked document. Subscriptions are rare enough to parse twice.
        check_query(query, variables)?;
        next.run(ctx, query, variables).await.map_err(library_limit)
    }
}

/// The parser's own guards (recursion depth, directives per field) fail with code-less
/// messages; give them the limit code too.
fn library_limit(e: ServerError) -> ServerError {
    if e.message.starts_with("The recursion depth") {
        refusal("recursiveDepth", MAX_RECURSIVE_DEPTH)
    } else if e.message.contains("directives") && e.message.contains("greater than") {
        refusal("directives", MAX_DIRECTIVES)
    } else {
        e
    }
}

/// Counts aliases and checks every `first` argument (literal or variable) in all operations
/// and fragments of the document.
fn check_document(doc: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    // A variable the request leaves out takes its default, which is checked the same way.
    let defaults = doc
        .operations
        .iter()
        .flat_map(|(_, op)| op.node.variable_definitions.iter())
        .filter_map(|def| {
            let value = def.node.default_value.as_ref()?;
            Some((def.node.name.node.clone(), value.node.clone()))
        })
        .collect();
    let mut walk = Walk {
        variables,
        defaults,
        aliases: 0,
    };
    match &doc.operations {
        DocumentOperations::Single(op) => walk.selection_set(&op.node.selection_set)?,
        DocumentOperations::Multiple(ops) => {
            for op in ops.values() {
                walk.selection_set(&op.node.selection_set)?;
            }
        }
    }
    for fragment in doc.fragments.values() {
        walk.selection_set(&fragment.node.selection_set)?;
    }
    Ok(())
}

struct Walk<'a> {
    variables: &'a Variables,
    defaults: HashMap<Name, Value>,
    aliases: usize,
}

impl Walk<'_> {
    // Recursion is bounded: `cost::measure` has already refused deeper documents.
    fn selection_set(&mut self, set: &Positioned<SelectionSet>) -> ServerResult<()> {
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => self.field(&field.node)?,
                Selection::InlineFragment(f) => self.selection_set(&f.node.selection_set)?,
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }

    fn field(&mut self, field: &Field) -> ServerResult<()> {
        if field.alias.is_some() {
            self.aliases += 1;
            if self.aliases > MAX_ALIASES {
                return Err(refusal("aliases", MAX_ALIASES));
            }
        }
        for (name, value) in &field.arguments {
            if name.node.as_str() != "first" {
                continue;
            }
            // A variable with neither a value nor a default resolves to an error: `first` is
            // then absent and the default page applies.
            let resolved = value.node.clone().into_const_with(|var| {
                self.variables
                    .get(&var)
                    .or_else(|| self.defaults.get(&var))
                    .cloned()
                    .ok_or(())
            });
            if matches!(resolved, Ok(Value::Number(n)) if n.as_i64().is_none_or(|n| n > MAX_PAGE as i64))
            {
                return Err(page_refusal());
            }
        }
        self.selection_set(&field.selection_set)
    }
}
