//! What a document costs before anything runs: its depth (enforced by [`DepthLimit`]) and the
//! number of root mutation fields (each one is an operation on its own: the transports cap
//! them per request and charge each to the caller's rate limit).
//!
//! Both walk fragments inline, as execution would, with memoised fragments (a chain of
//! fragments that each spread the next twice costs linear time, not exponential) and a guard
//! against fragment cycles (validation refuses those later; here they count as nothing).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, ServerError, ServerResult, Variables};

/// The selected operation's root mutation fields, fragments on `Mutation` included
/// (`__typename` is free). A query or subscription has none. Without a usable operation name
/// every mutation of the document counts, the largest one wins (execution then refuses the
/// document anyway, so the estimate only has to be safe).
pub fn root_mutation_fields(doc: &ExecutableDocument, operation_name: Option<&str>) -> usize {
    let count = |op: &OperationDefinition| match op.ty {
        OperationType::Mutation => Walk::new(doc).root_fields(&op.selection_set.node),
        OperationType::Query | OperationType::Subscription => 0,
    };
    match selected_operation(doc, operation_name) {
        Some(op) => count(op),
        None => doc
            .operations
            .iter()
            .map(|(_, op)| count(&op.node))
            .max()
            .unwrap_or(0),
    }
}

/// The operation a request names, or the only one; `None` when the name matches nothing or a
/// document of several operations names none (execution then reports it).
pub fn selected_operation<'a>(
    doc: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// How deeply the document nests fields (the deepest operation). Inside introspection
/// (`__schema`, `__type`) an `ofType` adds no level: it walks the wrappers of one type
/// reference (`[Int!]!` is three), returns one object or null and never branches, so the
/// standard introspection query (graphql-js nests `ofType` nine times) fits the same limit as
/// everything else while `fields { type { fields … } }`, which does branch, counts in full.
pub fn depth(doc: &ExecutableDocument) -> usize {
    let mut walk = Walk::new(doc);
    doc.operations
        .iter()
        .map(|(_, op)| walk.depth(&op.node.selection_set.node, false))
        .max()
        .unwrap_or(0)
}

/// Fragments expanded inside one another before the walk stops counting: twice async-graphql's
/// `limit_recursive_depth` (32), which refuses deeper documents before they run anyway.
const MAX_FRAGMENT_NESTING: usize = 64;

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    depths: HashMap<(&'a Name, bool), usize>,
    fields: HashMap<&'a Name, usize>,
    /// Fragments being expanded (a cycle stops here).
    open: Vec<&'a Name>,
}

impl<'a> Walk<'a> {
    fn new(doc: &'a ExecutableDocument) -> Self {
        Walk {
            doc,
            depths: HashMap::new(),
            fields: HashMap::new(),
            open: Vec::new(),
        }
    }

    fn depth(&mut self, set: &'a SelectionSet, introspection: bool) -> usize {
        let mut deepest = 0;
        for selection in &set.items {
            let depth = match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let inside = introspection || name == "__schema" || name == "__type";
                    let level = usize::from(!(inside && name == "ofType"));
                    level + self.depth(&field.node.selection_set.node, inside)
                }
                Selection::InlineFragment(inline) => {
                    self.depth(&inline.node.selection_set.node, introspection)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    self.fragment(
                        name,
                        |walk, set| walk.depth(set, introspection),
                        |walk| walk.depths.get(&(name, introspection)).copied(),
                    )
                    .inspect(|depth| {
                        self.depths.insert((name, introspection), *depth);
                    })
                    .unwrap_or(0)
                }
            };
            deepest = deepest.max(depth);
        }
        deepest
    }

    fn root_fields(&mut self, set: &'a SelectionSet) -> usize {
        let mut count = 0usize;
        for selection in &set.items {
            let n = match &selection.node {
                Selection::Field(field) => usize::from(field.node.name.node != "__typename"),
                Selection::InlineFragment(inline) => {
                    self.root_fields(&inline.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    self.fragment(name, Self::root_fields, |walk| {
                        walk.fields.get(name).copied()
                    })
                    .inspect(|n| {
                        self.fields.insert(name, *n);
                    })
                    .unwrap_or(0)
                }
            };
            count = count.saturating_add(n);
        }
        count
    }

    /// A fragment's measure: remembered, or computed once; `None` for an unknown fragment or
    /// a cycle.
    fn fragment(
        &mut self,
        name: &'a Name,
        measure: impl FnOnce(&mut Self, &'a SelectionSet) -> usize,
        remembered: impl FnOnce(&Self) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(known) = remembered(self) {
            return Some(known);
        }
        // A chain of fragments nests without nesting the text: past `MAX_FRAGMENT_NESTING`
        // stop counting, so a long chain in a small body cannot overflow the stack here.
        if self.open.contains(&name) || self.open.len() >= MAX_FRAGMENT_NESTING {
            return None;
        }
        let doc = self.doc;
        let fragment = doc.fragments.get(name)?;
        self.open.push(name);
        let value = measure(self, &fragment.node.selection_set.node);
        self.open.pop();
        Some(value)
    }
}

/// Refuses documents nested deeper than `max` (see [`depth`]) right after parsing, before
/// validation and before any resolver; replaces async-graphql's own depth limit, which counts
/// every `ofType`.
pub struct DepthLimit {
    max: usize,
}

impl DepthLimit {
    pub fn new(max: usize) -> Self {
        DepthLimit { max }
    }
}

impl ExtensionFactory for DepthLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DepthCheck { max: self.max })
    }
}

struct DepthCheck {
    max: usize,
}

#[async_trait::async_trait]
impl Extension for DepthCheck {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if depth(&doc) > self.max {
            // async-graphql's wording, so clients see the same refusal as before.
            return Err(ServerError::new("Query is nested too deep.", None));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn roots(query: &str, name: Option<&str>) -> usize {
        root_mutation_fields(&parse_query(query).unwrap(), name)
    }

    fn depth_of(query: &str) -> usize {
        depth(&parse_query(query).unwrap())
    }

    #[test]
    fn root_mutation_fields_count_aliases_and_fragments() {
        assert_eq!(roots("{ a b c }", None), 0);
        assert_eq!(roots("subscription { a }", None), 0);
        assert_eq!(roots("mutation { a b: a c: a __typename }", None), 3);
        let fragments = "mutation { a ...F ... on Mutation { b ... { c } } } \
                         fragment F on Mutation { d e ...G } fragment G on Mutation { f }";
        assert_eq!(roots(fragments, None), 6);
        let two = "query Q { a b c } mutation M { a b }";
        assert_eq!(roots(two, Some("Q")), 0);
        assert_eq!(roots(two, Some("M")), 2);
        assert_eq!(roots(two, None), 2);
        // A cycle counts as nothing (validation refuses it).
        assert_eq!(
            roots(
                "mutation { a ...F } fragment F on Mutation { b ...F }",
                None
            ),
            2
        );
        // Fragments spread twice per level are counted, in linear time.
        let mut doubling = String::from("mutation { ...F0 } fragment F40 on Mutation { a }");
        for i in 0..40 {
            let next = i + 1;
            doubling.push_str(&format!(
                " fragment F{i} on Mutation {{ ...F{next} ...F{next} }}"
            ));
        }
        assert_eq!(roots(&doubling, None), 1 << 40);
    }

    #[test]
    fn depth_counts_fields_but_not_introspection_wrappers() {
        assert_eq!(depth_of("{ a }"), 1);
        assert_eq!(depth_of("{ a { b { c } } d }"), 3);
        assert_eq!(depth_of("{ a { ...F } } fragment F on A { b { c } }"), 3);
        assert_eq!(
            depth_of("{ __schema { types { fields { type { ofType { ofType { name } } } } } } }"),
            5
        );
        assert_eq!(
            depth_of("{ __type(name: \"A\") { fields { type { fields { type { name } } } } } }"),
            6
        );
        // Outside introspection a field called ofType is just a field.
        assert_eq!(depth_of("{ a { ofType { ofType { b } } } }"), 4);
        let standard =
            include_str!("../../tests/tests/e2e/fixtures/introspection-graphql-js-16.graphql");
        assert_eq!(depth_of(standard), 6);
    }

    /// A chain of fragments, each spreading the next, is flat text but deep recursion: before
    /// the nesting guard 20,000 of them overflowed the stack (an anonymous request could abort
    /// the process). The chain is counted up to the guard and is refused later by execution.
    #[test]
    fn a_long_fragment_chain_does_not_overflow_the_stack() {
        const LINKS: usize = 20_000;
        let mut query = String::from("mutation { a ...F0 } ");
        for i in 0..LINKS {
            query.push_str(&format!(
                "fragment F{i} on Mutation {{ b{i}: a ...F{} }} ",
                i + 1
            ));
        }
        query.push_str(&format!("fragment F{LINKS} on Mutation {{ a }}"));
        let document = parse_query(&query).unwrap();
        assert_eq!(
            root_mutation_fields(&document, None),
            1 + MAX_FRAGMENT_NESTING
        );
        assert_eq!(depth(&document), 1);
    }
}
