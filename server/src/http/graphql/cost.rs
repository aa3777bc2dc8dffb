//! What one GraphQL request is before it runs, read once from its document (a persisted
//! document keeps it): the type of operation it selects (GET runs queries only) and its cost
//! to the caller's rate limit, priced the same way for an HTTP request (each operation of a
//! batch) and a WebSocket `subscribe`: every root mutation field runs on its own (140 aliased
//! `adjustPoints` are 140 postings), so each one is charged; a query or subscription costs 1.

use async_graphql::parser::types::{ExecutableDocument, OperationType};

/// What the transports check before a request runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prechecks {
    /// The type of operation that would run. `None` when no operation is selected (see
    /// [`loyalty_graphql::selected_operation`]) and not every operation is a query; execution
    /// reports the ambiguity.
    pub operation: Option<OperationType>,
    /// See [`loyalty_graphql::root_mutation_fields`].
    pub root_mutation_fields: usize,
}

impl Prechecks {
    pub fn of(document: &ExecutableDocument, operation_name: Option<&str>) -> Self {
        Prechecks {
            operation: selected_operation(document, operation_name),
            root_mutation_fields: loyalty_graphql::root_mutation_fields(document, operation_name),
        }
    }
}

/// The request's cost (at least 1), or why it is refused before anything runs: more root
/// mutation fields than `max_root_mutations`. A document that does not parse (`None`) costs 1;
/// execution reports the syntax error.
pub fn price(checks: Option<&Prechecks>, max_root_mutations: usize) -> Result<usize, String> {
    let fields = checks.map_or(0, |checks| checks.root_mutation_fields);
    if fields > max_root_mutations {
        return Err(format!(
            "a request may hold at most {max_root_mutations} mutation fields; this one holds \
             {fields}"
        ));
    }
    Ok(fields.max(1))
}

fn selected_operation(document: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    match loyalty_graphql::selected_operation(document, name) {
        Some(operation) => Some(operation.ty),
        None if document
            .operations
            .iter()
            .all(|(_, op)| op.node.ty == OperationType::Query) =>
        {
            Some(OperationType::Query)
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn checks(query: &str, name: Option<&str>) -> Option<Prechecks> {
        parse_query(query)
            .ok()
            .map(|document| Prechecks::of(&document, name))
    }

    fn price_of(query: &str, name: Option<&str>) -> Result<usize, String> {
        price(checks(query, name).as_ref(), 3)
    }

    fn operation(query: &str, name: Option<&str>) -> Option<OperationType> {
        checks(query, name).unwrap().operation
    }

    #[test]
    fn each_root_mutation_field_costs_one_queries_cost_one() {
        assert_eq!(price_of("{ a b c d e }", None), Ok(1));
        assert_eq!(price_of("subscription { a }", None), Ok(1));
        assert_eq!(price_of("mutation { a }", None), Ok(1));
        assert_eq!(
            price_of(
                "mutation { a b: a ...F } fragment F on Mutation { c }",
                None
            ),
            Ok(3)
        );
        assert_eq!(
            price_of("query Q { a } mutation M { a b c }", Some("Q")),
            Ok(1)
        );
        assert_eq!(price_of("not graphql", None), Ok(1));
        let refused = price_of("mutation { a b c ... on Mutation { d } }", None).unwrap_err();
        assert!(refused.contains("at most 3 mutation fields"), "{refused}");
        assert!(refused.contains("holds 4"), "{refused}");
    }

    #[test]
    fn selects_the_operation_that_would_run() {
        assert_eq!(operation("{ a }", None), Some(OperationType::Query));
        assert_eq!(
            operation("mutation { a }", None),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            operation("subscription { a }", None),
            Some(OperationType::Subscription)
        );
        let both = "query Q { a } mutation M { b }";
        assert_eq!(operation(both, Some("Q")), Some(OperationType::Query));
        assert_eq!(operation(both, Some("M")), Some(OperationType::Mutation));
        assert_eq!(operation(both, None), None);
        assert_eq!(operation(both, Some("X")), None);
        assert_eq!(
            operation("query A { a } query B { b }", None),
            Some(OperationType::Query)
        );
    }
}
