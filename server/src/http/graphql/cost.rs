//! What one GraphQL request costs the caller's rate limit, priced the same way for an HTTP
//! request (each operation of a batch) and a WebSocket `subscribe`: every root mutation field
//! runs on its own (140 aliased `adjustPoints` are 140 postings), so each one is charged; a
//! query or subscription costs 1.

use async_graphql::Request;

/// The request's cost (at least 1), or why it is refused before anything runs: more root
/// mutation fields than `max_root_mutations`. A document that does not parse costs 1
/// (execution reports the syntax error); a parsed one stays in the request, so it is not
/// parsed twice.
pub fn price(request: &mut Request, max_root_mutations: usize) -> Result<usize, String> {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return Ok(1);
    };
    let fields = loyalty_graphql::root_mutation_fields(document, operation_name.as_deref());
    if fields > max_root_mutations {
        return Err(format!(
            "a request may hold at most {max_root_mutations} mutation fields; this one holds \
             {fields}"
        ));
    }
    Ok(fields.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price_of(query: &str, name: Option<&str>) -> Result<usize, String> {
        let mut request = Request::new(query);
        if let Some(name) = name {
            request = request.operation_name(name);
        }
        price(&mut request, 3)
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
}
