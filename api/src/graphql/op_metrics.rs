//! Counts GraphQL operations in `tms_graphql_operations_total` by operation type, root field
//! and outcome code. Request-level hooks only (`parse_query`, `execute`, `request`): a hook on
//! field resolution would cost every field of every response.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::registry::Registry;
use async_graphql::{Response, ServerResult, Value, Variables};
use tms_core::metrics::http::{GRAPHQL_OPERATIONS, code_label};

/// Installs [`OpMetricsExtension`] on a schema.
pub struct OpMetrics;

impl ExtensionFactory for OpMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OpMetricsExtension::default())
    }
}

/// One operation of the document: its name, type and first root field (`other` when that is
/// not a field of the schema's root type, so client-chosen text never becomes a label).
#[derive(Debug, Clone)]
struct Op {
    name: Option<String>,
    ty: &'static str,
    field: String,
}

#[derive(Default)]
pub struct OpMetricsExtension {
    ops: Mutex<Vec<Op>>,
    chosen: Mutex<Option<String>>,
}

fn type_label(t: OperationType) -> &'static str {
    match t {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

fn root_field(
    registry: &Registry,
    ty: OperationType,
    selection: &[async_graphql::Positioned<Selection>],
) -> String {
    let root = match ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let first = selection.iter().find_map(|s| match &s.node {
        Selection::Field(f) => Some(f.node.name.node.as_str()),
        _ => None,
    });
    match (root.and_then(|r| registry.types.get(r)), first) {
        (Some(t), Some(f)) if t.field_by_name(f).is_some() => f.to_string(),
        _ => "other".to_string(),
    }
}

fn summarise(registry: &Registry, doc: &ExecutableDocument) -> Vec<Op> {
    let one = |name: Option<String>, op: &async_graphql::parser::types::OperationDefinition| Op {
        name,
        ty: type_label(op.ty),
        field: root_field(registry, op.ty, &op.selection_set.node.items),
    };
    match &doc.operations {
        DocumentOperations::Single(op) => vec![one(None, &op.node)],
        DocumentOperations::Multiple(map) => map
            .iter()
            .map(|(n, op)| one(Some(n.to_string()), &op.node))
            .collect(),
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for OpMetricsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let ops = summarise(&ctx.schema_env.registry, &doc);
        *self.ops.lock().expect("unpoisoned") = ops;
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        *self.chosen.lock().expect("unpoisoned") = operation_name.map(str::to_string);
        next.run(ctx, operation_name).await
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let resp = next.run(ctx).await;
        let code =
            resp.errors.first().map(
                |e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
                    Some(Value::String(c)) => code_label(Some(c)),
                    _ => "other",
                },
            );
        let code = code.unwrap_or("OK");
        let ops = self.ops.lock().expect("unpoisoned");
        let chosen = self.chosen.lock().expect("unpoisoned");
        let op = match (ops.len(), chosen.as_deref()) {
            (1, _) => ops.first(),
            (_, Some(n)) => ops.iter().find(|o| o.name.as_deref() == Some(n)),
            _ => None,
        };
        // A document that did not parse has no operation: counted as a query named `other`.
        let (ty, field) = op
            .map(|o| (o.ty, o.field.as_str()))
            .unwrap_or(("query", "other"));
        GRAPHQL_OPERATIONS
            .with_label_values(&[ty, field, code])
            .inc();
        tracing::Span::current().record("graphql.operation", format!("{ty} {field}"));
        resp
    }
}
