//! Counts GraphQL operations in `tms_graphql_operations_total` by operation type, root field
//! and outcome code. Called once per request by [`super::pipeline::execute`], not installed as
//! an extension: any extension puts every field resolution through the extension chain.

use async_graphql::Response;
use async_graphql::Value;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
};
use tms_core::metrics::http::{GRAPHQL_OPERATIONS, code_label};

use super::permissions::RULES;

/// The labels of one operation: its type and first root field (`other` when that is not a root
/// field of the schema, so client-chosen text never becomes a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub ty: &'static str,
    pub field: &'static str,
}

/// What a request that did not parse, or named no operation of its document, is counted as.
pub const UNKNOWN: Operation = Operation {
    ty: "query",
    field: "other",
};

/// The operation `name` picks from `doc` (the only one when the document holds one).
pub fn classify(doc: &ExecutableDocument, name: Option<&str>) -> Operation {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(map), Some(n)) => map
            .iter()
            .find(|(k, _)| k.as_str() == n)
            .map(|(_, op)| &op.node),
        (DocumentOperations::Multiple(map), None) if map.len() == 1 => {
            map.values().next().map(|op| &op.node)
        }
        _ => None,
    };
    op.map(of_definition).unwrap_or(UNKNOWN)
}

fn of_definition(op: &OperationDefinition) -> Operation {
    let (ty, root) = match op.ty {
        OperationType::Query => ("query", "Query"),
        OperationType::Mutation => ("mutation", "Mutation"),
        OperationType::Subscription => ("subscription", "Subscription"),
    };
    let first = op
        .selection_set
        .node
        .items
        .iter()
        .find_map(|s| match &s.node {
            Selection::Field(f) => Some(f.node.name.node.as_str()),
            _ => None,
        });
    Operation {
        ty,
        field: first.and_then(|f| root_field(root, f)).unwrap_or("other"),
    }
}

/// `field` as a `'static` label when `root.field` is in the rules table (every schema field is:
/// the schema test sees to it).
fn root_field(root: &str, field: &str) -> Option<&'static str> {
    RULES.iter().find_map(|(name, _)| {
        let (t, f) = name.split_once('.')?;
        (t == root && f == field).then_some(f)
    })
}

/// Counts `resp` under `op` and names the operation on the request's span.
pub fn record(op: Operation, resp: &Response) {
    let code = match resp.errors.first() {
        None => "OK",
        Some(e) => match e.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(Value::String(c)) => code_label(Some(c)),
            _ => "other",
        },
    };
    GRAPHQL_OPERATIONS
        .with_label_values(&[op.ty, op.field, code])
        .inc();
    tracing::Span::current().record("graphql.operation", format!("{} {}", op.ty, op.field));
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn of(q: &str, name: Option<&str>) -> Operation {
        classify(&parse_query(q).expect("parses"), name)
    }

    #[test]
    fn labels_come_from_the_schema_never_from_the_client() {
        assert_eq!(
            of("{ runs(first:1){ edges { cursor } } }", None).field,
            "runs"
        );
        assert_eq!(
            of(
                "mutation { login(email:\"a\",password:\"b\"){ expiresIn } }",
                None
            )
            .ty,
            "mutation"
        );
        assert_eq!(of("{ attackerChosenName }", None).field, "other");
        assert_eq!(of("{ ... on Query { me { id } } }", None).field, "other");
        let two = "query A { me { id } } mutation B { logout(refreshToken:\"x\") }";
        assert_eq!(
            of(two, Some("B")),
            Operation {
                ty: "mutation",
                field: "logout"
            }
        );
        assert_eq!(of(two, None), UNKNOWN);
        assert_eq!(of(two, Some("C")), UNKNOWN);
    }
}
