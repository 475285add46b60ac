//! Walks a schema's SDL from its three roots: every object (and interface) field a client can
//! reach by nesting, and which root fields lead to each type. The permission-rule tests use it
//! to prove every reachable field has a rule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use async_graphql::parser::types::{
    BaseType, FieldDefinition, Type, TypeKind, TypeSystemDefinition,
};

/// What a walk found.
#[derive(Debug, Default)]
pub struct SchemaWalk {
    /// Root fields, as `Query.me`, `Mutation.login`, `Subscription.runProgress`.
    pub roots: BTreeSet<String>,
    /// Every reachable field, roots included, as `Type.field`.
    pub fields: BTreeSet<String>,
    /// For each reachable output type, the root fields it can be reached from.
    pub reached_from: BTreeMap<String, BTreeSet<String>>,
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

/// Parses `sdl` and walks it. Introspection's own `__` types are left out: production turns
/// introspection off, and they carry no data of ours.
pub fn walk(sdl: &str) -> Result<SchemaWalk, String> {
    let doc = async_graphql::parser::parse_schema(sdl).map_err(|e| e.to_string())?;
    let mut types: BTreeMap<String, Vec<FieldDefinition>> = BTreeMap::new();
    let mut unions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut roots = vec![
        ("Query".to_string(), "Query"),
        ("Mutation".to_string(), "Mutation"),
        ("Subscription".to_string(), "Subscription"),
    ];
    for def in doc.definitions {
        match def {
            TypeSystemDefinition::Type(t) => {
                let t = t.node;
                let name = t.name.node.to_string();
                match t.kind {
                    TypeKind::Object(o) => {
                        types.insert(name, o.fields.into_iter().map(|f| f.node).collect());
                    }
                    TypeKind::Interface(i) => {
                        types.insert(name, i.fields.into_iter().map(|f| f.node).collect());
                    }
                    TypeKind::Union(u) => {
                        unions.insert(name, u.members.iter().map(|m| m.node.to_string()).collect());
                    }
                    _ => {}
                }
            }
            TypeSystemDefinition::Schema(s) => {
                let s = s.node;
                for (slot, n) in [(0, s.query), (1, s.mutation), (2, s.subscription)] {
                    if let Some(n) = n {
                        roots[slot].0 = n.node.to_string();
                    }
                }
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    let mut out = SchemaWalk::default();
    for (root_type, label) in roots {
        let Some(fields) = types.get(&root_type) else {
            continue;
        };
        for f in fields {
            let root = format!("{label}.{}", f.name.node);
            out.roots.insert(root.clone());
            out.fields.insert(root.clone());
            // Breadth-first over the output types reachable from this root field.
            let mut queue = VecDeque::from([named(&f.ty.node).to_string()]);
            let mut seen = BTreeSet::new();
            while let Some(ty) = queue.pop_front() {
                if ty.starts_with("__") || !seen.insert(ty.clone()) {
                    continue;
                }
                if let Some(members) = unions.get(&ty) {
                    queue.extend(members.iter().cloned());
                    continue;
                }
                let Some(fields) = types.get(&ty) else {
                    continue; // scalar or enum: a leaf
                };
                out.reached_from
                    .entry(ty.clone())
                    .or_default()
                    .insert(root.clone());
                for g in fields {
                    out.fields.insert(format!("{ty}.{}", g.name.node));
                    queue.push_back(named(&g.ty.node).to_string());
                }
            }
        }
    }
    Ok(out)
}
