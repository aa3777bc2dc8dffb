//! Every request answered from a memo gets exactly the answer of a full validation, and the
//! memo answers where it should. The schema is the real one without the service: no request
//! here gets past validation to a resolver that could post anything.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{Request, Schema};
use serde_json::{json, Value as Json};

use super::*;
use crate::{Mutation, Query, Subscription};

/// Counts the validations that really run (it sits after [`RememberedValidation`]).
struct Counter(Arc<AtomicUsize>);

impl ExtensionFactory for Counter {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Counter(self.0.clone()))
    }
}

#[async_trait::async_trait]
impl Extension for Counter {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(ctx).await
    }
}

struct Harness {
    schema: Schema<Query, Mutation, Subscription>,
    validations: Arc<AtomicUsize>,
}

impl Harness {
    fn new() -> Self {
        let validations = Arc::new(AtomicUsize::new(0));
        let schema = Schema::build(
            Query::default(),
            Mutation::default(),
            Subscription::default(),
        )
        .extension(RememberedValidation)
        .extension(Counter(validations.clone()))
        .limit_complexity(2_500)
        .finish();
        Harness {
            schema,
            validations,
        }
    }

    async fn plain(&self, text: &str, variables: &Json) -> Json {
        let request = Request::new(text).variables(Variables::from_json(variables.clone()));
        serde_json::to_value(self.schema.execute(request).await).unwrap()
    }

    /// The answer through the memo, and whether validation ran for it.
    async fn cached(&self, memo: &ValidationMemo, text: &str, variables: &Json) -> (Json, bool) {
        let mut request = Request::new("")
            .variables(Variables::from_json(variables.clone()))
            .data(memo.clone());
        request.set_parsed_query(async_graphql::parser::parse_query(text).unwrap());
        let before = self.validations.load(Ordering::SeqCst);
        let answer = serde_json::to_value(self.schema.execute(request).await).unwrap();
        (answer, self.validations.load(Ordering::SeqCst) > before)
    }

    /// Runs `text` with each set of variables both ways after one `warm` request; returns
    /// whether each cached run validated.
    async fn compare(&self, text: &str, warm: Json, cases: &[Json]) -> Vec<bool> {
        let memo = ValidationMemo::for_document(&async_graphql::parser::parse_query(text).unwrap())
            .unwrap();
        let (_, validated) = self.cached(&memo, text, &warm).await;
        assert!(validated, "the first request validates");
        let mut ran = Vec::new();
        for variables in cases {
            let plain = self.plain(text, variables).await;
            let (cached, validated) = self.cached(&memo, text, variables).await;
            assert_eq!(cached, plain, "{text} with {variables}");
            ran.push(validated);
        }
        ran
    }
}

const RECORD: &str =
    "mutation R($input: RecordActionInput!) { recordAction(input: $input) { awarded points } }";

#[tokio::test]
async fn whole_argument_variables_skip_validation_only_when_surely_valid() {
    let harness = Harness::new();
    let good = [
        json!({"input": {"action": "daily_login"}}),
        json!({"input": {"action": "x", "idempotencyKey": "k", "points": "1.50", "objectId": null}}),
        // Absent: validation skips the argument too; execution reports it.
        json!({}),
        // The library's validation takes any string for a `Decimal`; the resolver refuses it.
        json!({"input": {"action": "x", "points": "abc"}}),
    ];
    let bad = [
        json!({"input": {"action": 5}}),
        json!({"input": {"action": "x", "nope": 1}}),
        json!({"input": {}}),
        json!({"input": null}),
        json!({"input": "daily_login"}),
        json!({"input": [{"action": "x"}]}),
    ];
    let warm = json!({"input": {"action": "warm"}});
    let ran = harness.compare(RECORD, warm, &good).await;
    assert_eq!(ran, [false; 4], "good values skip validation");
    let ran = harness
        .compare(RECORD, json!({"input": {"action": "w"}}), &bad)
        .await;
    assert!(
        ran.iter().all(|ran| *ran),
        "bad values are validated: {ran:?}"
    );
}

#[tokio::test]
async fn a_nullable_variable_with_a_default_is_not_null_for_the_memo() {
    let harness = Harness::new();
    let text = "mutation R($input: RecordActionInput = {action: \"daily_login\"}) { recordAction(input: $input) { awarded } }";
    let ran = harness
        .compare(
            text,
            json!({}),
            &[
                json!({"input": null}),
                json!({"input": {"action": "x"}}),
                json!({}),
            ],
        )
        .await;
    assert_eq!(ran, [true, false, false]);
}

#[tokio::test]
async fn variables_inside_literals_or_prices_are_always_validated() {
    let harness = Harness::new();
    let nested = "mutation V($sku: String!, $key: String) { recordAction(input: {action: \"product_view\", objectId: $sku, idempotencyKey: $key}) { awarded } }";
    let cases = [
        json!({"sku": "p1", "key": "k"}),
        json!({"sku": 5, "key": "k"}),
        json!({"key": "k"}),
        json!({"sku": ["p"], "key": "k"}),
    ];
    let ran = harness.compare(nested, json!({"sku": "w"}), &cases).await;
    assert!(ran.iter().all(|ran| *ran), "{ran:?}");

    let priced = "query P($n: Int) { members(first: $n) { edges { node { id transactions(first: $n) { edges { node { id } } } } } } }";
    let cases = [json!({"n": 1}), json!({"n": 100}), json!({"n": "x"})];
    let ran = harness.compare(priced, json!({"n": 1}), &cases).await;
    assert!(ran.iter().all(|ran| *ran), "{ran:?}");
}

#[tokio::test]
async fn documents_without_variables_are_validated_once() {
    let harness = Harness::new();
    let ran = harness
        .compare(
            "{ me { balance } }",
            json!({}),
            &[json!({}), json!({"x": 1})],
        )
        .await;
    assert_eq!(ran, [false, false]);
    // An invalid document never gets a verdict.
    let invalid = "{ me { balance nope } }";
    let ran = harness.compare_invalid(invalid).await;
    assert_eq!(ran, [true, true]);
}

#[test]
fn several_operations_get_no_memo() {
    let document =
        async_graphql::parser::parse_query("query A { me { id } } query B { me { id } }");
    assert!(ValidationMemo::for_document(&document.unwrap()).is_none());
}

impl Harness {
    async fn compare_invalid(&self, text: &str) -> Vec<bool> {
        let memo = ValidationMemo::for_document(&async_graphql::parser::parse_query(text).unwrap())
            .unwrap();
        let mut ran = Vec::new();
        for _ in 0..2 {
            let plain = self.plain(text, &json!({})).await;
            assert!(plain["errors"].is_array(), "{plain}");
            let (cached, validated) = self.cached(&memo, text, &json!({})).await;
            assert_eq!(cached, plain);
            ran.push(validated);
        }
        ran
    }
}
