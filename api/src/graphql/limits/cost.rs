//! What a document would cost to execute — field depth, complexity (one per field, as the
//! library counts it) and selection nesting — measured in time linear in the document: each
//! fragment is measured once and reused wherever it is spread.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, ServerResult};

use super::{MAX_DIRECTIVES, MAX_RECURSIVE_DEPTH, refusal};

/// The cost of one selection set (or of a whole document: the sum over its operations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Deepest chain of nested fields.
    pub depth: usize,
    /// Fields as executed, fragments expanded (saturating).
    pub complexity: usize,
    /// Deepest nesting of selection sets, fragments and inline fragments included: what the
    /// library's recursion guard measures.
    pub nesting: usize,
}

impl Cost {
    fn merge(self, other: Cost) -> Cost {
        Cost {
            depth: self.depth.max(other.depth),
            complexity: self.complexity.saturating_add(other.complexity),
            nesting: self.nesting.max(other.nesting),
        }
    }
}

/// Measures every operation of `doc`; refuses a document nested deeper than the recursion
/// limit, a field with too many directives, or fragments that spread themselves.
pub fn measure(doc: &ExecutableDocument) -> ServerResult<Cost> {
    let mut m = Measure {
        doc,
        fragments: HashMap::new(),
        visiting: HashSet::new(),
    };
    let mut total = Cost::default();
    for (_, op) in doc.operations.iter() {
        total = total.merge(m.set(&op.node.selection_set, 0)?);
    }
    Ok(total)
}

struct Measure<'a> {
    doc: &'a ExecutableDocument,
    fragments: HashMap<Name, Cost>,
    visiting: HashSet<Name>,
}

impl Measure<'_> {
    /// `at` is the absolute nesting of `set`, so recursion stops at the limit however the
    /// document is built.
    fn set(&mut self, set: &Positioned<SelectionSet>, at: usize) -> ServerResult<Cost> {
        if at > MAX_RECURSIVE_DEPTH {
            return Err(refusal("recursiveDepth", MAX_RECURSIVE_DEPTH));
        }
        let mut cost = Cost::default();
        for item in &set.node.items {
            let one = match &item.node {
                Selection::Field(field) => {
                    if field.node.directives.len() > MAX_DIRECTIVES {
                        return Err(refusal("directives", MAX_DIRECTIVES));
                    }
                    let sub = &field.node.selection_set;
                    if sub.node.items.is_empty() {
                        Cost {
                            depth: 1,
                            complexity: 1,
                            nesting: 0,
                        }
                    } else {
                        let c = self.set(sub, at + 1)?;
                        Cost {
                            depth: c.depth + 1,
                            complexity: c.complexity.saturating_add(1),
                            nesting: c.nesting + 1,
                        }
                    }
                }
                Selection::InlineFragment(f) => {
                    let c = self.set(&f.node.selection_set, at + 1)?;
                    Cost {
                        nesting: c.nesting + 1,
                        ..c
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let c = self.fragment(&spread.node.fragment_name.node, at + 1)?;
                    Cost {
                        nesting: c.nesting + 1,
                        ..c
                    }
                }
            };
            cost = cost.merge(one);
        }
        Ok(cost)
    }

    /// A fragment's own cost, measured the first time it is spread. An unknown fragment costs
    /// nothing here: validation reports it.
    fn fragment(&mut self, name: &Name, at: usize) -> ServerResult<Cost> {
        if let Some(c) = self.fragments.get(name) {
            // Measured elsewhere; its nesting still counts from here.
            if at + c.nesting > MAX_RECURSIVE_DEPTH {
                return Err(refusal("recursiveDepth", MAX_RECURSIVE_DEPTH));
            }
            return Ok(*c);
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Ok(Cost::default());
        };
        // A fragment that spreads itself would be infinitely deep.
        if !self.visiting.insert(name.clone()) {
            return Err(refusal("recursiveDepth", MAX_RECURSIVE_DEPTH));
        }
        let c = self.set(&fragment.node.selection_set, at)?;
        self.visiting.remove(name);
        self.fragments.insert(name.clone(), c);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn cost(q: &str) -> Cost {
        measure(&parse_query(q).unwrap()).unwrap()
    }

    #[test]
    fn counts_like_the_library() {
        let c = cost("{ a { b c { d } } e }");
        assert_eq!((c.depth, c.complexity, c.nesting), (3, 5, 2));
        let c = cost("{ a { ...F } } fragment F on T { b { c } }");
        assert_eq!((c.depth, c.complexity, c.nesting), (3, 3, 3));
    }

    #[test]
    fn nested_spreads_are_measured_once_each() {
        // 10^40 fields if expanded: measured instantly, and refused for its nesting.
        let mut doc = "fragment F0 on T { id }\n".to_string();
        for i in 1..=40 {
            let spreads = format!("...F{} ", i - 1).repeat(10);
            doc.push_str(&format!("fragment F{i} on T {{ {spreads}}}\n"));
        }
        let q = format!("{{ a {{ ...F40 }} }}\n{doc}");
        assert!(measure(&parse_query(&q).unwrap()).is_err());
        let q = format!("{{ a {{ ...F15 }} }}\n{doc}");
        let c = measure(&parse_query(&q).unwrap()).unwrap();
        assert_eq!(c.complexity, 10usize.pow(15) + 1);
        let q = format!("{{ a {{ ...F25 }} }}\n{doc}");
        assert_eq!(
            measure(&parse_query(&q).unwrap()).unwrap().complexity,
            usize::MAX
        );
    }

    #[test]
    fn self_spreading_fragments_are_refused() {
        let q = "{ a { ...F } } fragment F on T { b { ...G } } fragment G on T { ...F }";
        assert!(measure(&parse_query(q).unwrap()).is_err());
    }
}
