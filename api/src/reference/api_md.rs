//! `docs/reference/api.md`, rendered from the schema's SDL (roots first, then every other type
//! by kind and name), and the checks that every item of the schema is described and that its
//! nullability is consistent.

use std::fmt::Write as _;

use async_graphql::parser::types::{
    BaseType, FieldDefinition, InputValueDefinition, Type, TypeDefinition, TypeKind,
    TypeSystemDefinition,
};

use super::{Doc, banner};

const ROOTS: [&str; 3] = ["Query", "Mutation", "Subscription"];

const INTRO: &str = "\
# GraphQL API reference

Endpoint: `POST /graphql` (JSON `{query, variables, operationName, extensions}`, or an array of
up to 10 of them), `GET /graphql?query=...` for queries only, and the same path as a WebSocket
(`graphql-transport-ws` or `graphql-ws`) for subscriptions. Authenticate with
`Authorization: Bearer <access token or API token>` (over WebSocket: in `connection_init`'s
payload). Every error carries `extensions.code` (see [errors.md](errors.md)). Automatic
persisted queries (Apollo's `extensions.persistedQuery`) are accepted over POST and GET.
Browser origins listed in `TMS_ALLOWED_ORIGINS` may call the API cross-origin (CORS).

Each field's description names the role it needs when it is not open to every signed-in
caller; a role without it gets `FORBIDDEN`.
";

/// The schema's type definitions, `__` introspection types left out.
fn types(sdl: &str) -> Vec<TypeDefinition> {
    let doc = async_graphql::parser::parse_schema(sdl).expect("the schema's own SDL parses");
    doc.definitions
        .into_iter()
        .filter_map(|d| match d {
            TypeSystemDefinition::Type(t) if !t.node.name.node.starts_with("__") => Some(t.node),
            _ => None,
        })
        .collect()
}

fn rank(t: &TypeDefinition) -> (usize, String) {
    let name = t.name.node.to_string();
    let kind = match (&t.kind, ROOTS.iter().position(|r| *r == name)) {
        (_, Some(i)) => i,
        (TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_), None) => 3,
        (TypeKind::InputObject(_), None) => 4,
        (TypeKind::Enum(_), None) => 5,
        (TypeKind::Scalar, None) => 6,
    };
    (kind, name)
}

fn kind_word(k: &TypeKind) -> &'static str {
    match k {
        TypeKind::Scalar => "scalar",
        TypeKind::Object(_) => "object",
        TypeKind::Interface(_) => "interface",
        TypeKind::Union(_) => "union",
        TypeKind::Enum(_) => "enum",
        TypeKind::InputObject(_) => "input",
    }
}

/// A description on one line (doc comments wrap at 100 columns), for list items.
fn one_line(d: &str) -> String {
    super::md_text(&d.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Renders the reference from `sdl`.
pub fn render(sdl: &str) -> String {
    let mut types = types(sdl);
    types.sort_by_key(rank);
    let mut out = banner(Doc::Api, "the GraphQL schema (`schema.graphql`)");
    out.push_str(INTRO);
    out.push_str("\n## Contents\n\n");
    for t in &types {
        let name = t.name.node.as_str();
        let _ = writeln!(
            out,
            "- [`{name}`](#{}) ({})",
            name.to_ascii_lowercase(),
            kind_word(&t.kind)
        );
    }
    for t in &types {
        let name = t.name.node.as_str();
        let _ = write!(out, "\n## {name}\n\n_{}_", kind_word(&t.kind));
        if let TypeKind::Union(u) = &t.kind {
            let members: Vec<String> = u.members.iter().map(|m| format!("`{}`", m.node)).collect();
            let _ = write!(out, " of {}", members.join(", "));
        }
        out.push_str("\n\n");
        if let Some(d) = &t.description {
            let _ = writeln!(out, "{}\n", super::md_text(d.node.trim()));
        }
        match &t.kind {
            TypeKind::Object(o) => fields(&mut out, o.fields.iter().map(|f| &f.node)),
            TypeKind::Interface(i) => fields(&mut out, i.fields.iter().map(|f| &f.node)),
            TypeKind::InputObject(i) => {
                for f in &i.fields {
                    let _ = writeln!(out, "- {}", input_value(&f.node));
                }
            }
            TypeKind::Enum(e) => {
                for v in &e.values {
                    let d = v.node.description.as_ref().map(|d| one_line(&d.node));
                    let _ = writeln!(
                        out,
                        "- `{}`{}",
                        v.node.value.node,
                        d.map(|d| format!(": {d}")).unwrap_or_default()
                    );
                }
            }
            TypeKind::Scalar | TypeKind::Union(_) => {}
        }
    }
    out
}

fn fields<'a>(out: &mut String, fields: impl Iterator<Item = &'a FieldDefinition>) {
    for f in fields {
        let d = f.description.as_ref().map(|d| one_line(&d.node));
        let _ = writeln!(
            out,
            "- **`{}`**: `{}`{}",
            f.name.node,
            f.ty.node,
            d.map(|d| format!(" — {d}")).unwrap_or_default()
        );
        for a in &f.arguments {
            let _ = writeln!(out, "  - argument {}", input_value(&a.node));
        }
    }
}

fn input_value(v: &InputValueDefinition) -> String {
    let default = v
        .default_value
        .as_ref()
        .map(|d| format!(" = {}", d.node))
        .unwrap_or_default();
    let d = v.description.as_ref().map(|d| one_line(&d.node));
    format!(
        "`{}: {}{default}`{}",
        v.name.node,
        v.ty.node,
        d.map(|d| format!(" — {d}")).unwrap_or_default()
    )
}

/// Every type, field, argument, enum value and input field of `sdl` without a description, as
/// `Type`, `Type.field`, `Type.field(arg)` or `Type.VALUE`.
pub fn undocumented(sdl: &str) -> Vec<String> {
    let mut out = Vec::new();
    let blank = |d: &Option<async_graphql::Positioned<String>>| {
        d.as_ref().is_none_or(|d| d.node.trim().is_empty())
    };
    for t in types(sdl) {
        let ty = t.name.node.to_string();
        if blank(&t.description) {
            out.push(ty.clone());
        }
        let mut object_fields = |fields: &[async_graphql::Positioned<FieldDefinition>]| {
            for f in fields {
                let f = &f.node;
                if blank(&f.description) {
                    out.push(format!("{ty}.{}", f.name.node));
                }
                for a in &f.arguments {
                    if blank(&a.node.description) {
                        out.push(format!("{ty}.{}({})", f.name.node, a.node.name.node));
                    }
                }
            }
        };
        match &t.kind {
            TypeKind::Object(o) => object_fields(&o.fields),
            TypeKind::Interface(i) => object_fields(&i.fields),
            TypeKind::InputObject(i) => {
                for f in &i.fields {
                    if blank(&f.node.description) {
                        out.push(format!("{ty}.{}", f.node.name.node));
                    }
                }
            }
            TypeKind::Enum(e) => {
                for v in &e.values {
                    if blank(&v.node.description) {
                        out.push(format!("{ty}.{}", v.node.value.node));
                    }
                }
            }
            TypeKind::Scalar | TypeKind::Union(_) => {}
        }
    }
    out
}

/// Nullability slips: a list whose items may be null (every list of ours holds items), and an
/// output field named `id` that may be null (an object always has its id). `allowed` names the
/// fields whose nullability means something (`AuditActor.id`: an actor without an account).
pub fn nullability_slips(sdl: &str, allowed: &[&str]) -> Vec<String> {
    fn nullable_items(t: &Type) -> bool {
        match &t.base {
            BaseType::Named(_) => false,
            BaseType::List(inner) => inner.nullable || nullable_items(inner),
        }
    }
    let mut out = Vec::new();
    let mut check = |at: String, ty: &Type, is_id_field: bool| {
        if allowed.contains(&at.as_str()) {
            return;
        }
        if nullable_items(ty) {
            out.push(format!("{at}: `{ty}` has nullable list items"));
        }
        if is_id_field && ty.nullable {
            out.push(format!("{at}: an id field should be non-null, not `{ty}`"));
        }
    };
    for t in types(sdl) {
        let ty = t.name.node.to_string();
        let fields: &[async_graphql::Positioned<FieldDefinition>] = match &t.kind {
            TypeKind::Object(o) => &o.fields,
            TypeKind::Interface(i) => &i.fields,
            TypeKind::InputObject(i) => {
                for f in &i.fields {
                    check(format!("{ty}.{}", f.node.name.node), &f.node.ty.node, false);
                }
                continue;
            }
            _ => continue,
        };
        for f in fields {
            let f = &f.node;
            check(
                format!("{ty}.{}", f.name.node),
                &f.ty.node,
                f.name.node.as_str() == "id",
            );
            for a in &f.arguments {
                check(
                    format!("{ty}.{}({})", f.name.node, a.node.name.node),
                    &a.node.ty.node,
                    false,
                );
            }
        }
    }
    out
}
