//! Descriptions the schema cannot take from our doc comments: the types async-graphql generates
//! (connections, edges, built-in scalars), and each root or checked field's access rule, taken
//! from the one rules table (`permissions::RULES`) so the schema cannot contradict it.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};

use super::permissions::{RULES, Rule};

/// Library-generated types and their descriptions.
const LIBRARY_TYPES: &[(&str, &str)] = &[
    (
        "WorkflowConnection",
        "A page of workflows (`edges` or `nodes`), with `pageInfo` to ask for the next page.",
    ),
    (
        "RunConnection",
        "A page of runs (`edges` or `nodes`), with `pageInfo` to ask for the next page.",
    ),
    (
        "UserConnection",
        "A page of accounts (`edges` or `nodes`), with `pageInfo` to ask for the next page.",
    ),
    (
        "AuditEventConnection",
        "A page of audit events (`edges` or `nodes`), with `pageInfo` to ask for the next page.",
    ),
    (
        "ImportBatchConnection",
        "A page of import batches (`edges` or `nodes`), with `pageInfo` to ask for the next page.",
    ),
    (
        "PageInfo",
        "Where a page sits: pass `endCursor` as `after` while `hasNextPage`.",
    ),
    (
        "DateTime",
        "A point in time, RFC 3339 in UTC, e.g. `2026-12-06T21:53:01.123Z`.",
    ),
    ("JSON", "Any JSON value (objects where the field says so)."),
    (
        "ID",
        "An opaque identifier; TMS ids are UUIDs, and a malformed one is a VALIDATION error.",
    ),
    ("String", "UTF-8 text."),
    ("Int", "A signed integer."),
    ("Float", "A double-precision number."),
    ("Boolean", "`true` or `false`."),
];

/// Registered last (`SchemaBuilder::register_output_type`), when every type exists: it only edits
/// their descriptions and registers nothing of its own.
pub struct SchemaDescriptions;

fn description_of(ty: &mut MetaType) -> Option<&mut Option<String>> {
    match ty {
        MetaType::Scalar { description, .. }
        | MetaType::Object { description, .. }
        | MetaType::Interface { description, .. }
        | MetaType::Union { description, .. }
        | MetaType::Enum { description, .. }
        | MetaType::InputObject { description, .. } => Some(description),
    }
}

fn access_note(rule: Rule) -> Option<String> {
    match rule {
        Rule::Parent => None,
        Rule::Public => Some("Access: no token needed.".into()),
        Rule::Authenticated => Some("Access: any signed-in caller.".into()),
        Rule::Requires(p) => {
            let mut roles = vec!["ADMIN".to_string()];
            roles.extend(p.roles().iter().map(|r| format!("{r:?}").to_uppercase()));
            Some(format!("Access: roles {}.", roles.join(", ")))
        }
    }
}

fn describe(registry: &mut Registry) {
    for (name, text) in LIBRARY_TYPES {
        if let Some(d) = registry.types.get_mut(*name).and_then(description_of)
            && d.as_deref().is_none_or(|d| d.starts_with("Implement the"))
        {
            *d = Some((*text).to_string());
        }
    }
    for (path, rule) in RULES {
        let (Some((ty, field)), Some(note)) = (path.split_once('.'), access_note(*rule)) else {
            continue;
        };
        let fields = match registry.types.get_mut(ty) {
            Some(MetaType::Object { fields, .. }) | Some(MetaType::Interface { fields, .. }) => {
                fields
            }
            _ => continue,
        };
        if let Some(f) = fields.get_mut(field) {
            f.description = Some(match f.description.take() {
                Some(d) => format!("{}\n\n{note}", d.trim_end()),
                None => note,
            });
        }
    }
}

impl OutputType for SchemaDescriptions {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("PageInfo")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        describe(registry);
        "PageInfo".into()
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        // No field returns this type: it exists only to run `describe` at build time.
        Ok(Value::Null)
    }
}
