//! Validation remembered for a persisted document, so a request that names it by hash skips
//! the validation pass as well as parsing, when that is sound.
//!
//! async-graphql's validation reads the request in three places only; everything else is a
//! function of the document and the schema:
//! 1. `ArgumentsOfCorrectType` checks each argument with the request's variable values put in
//!    (an argument whose variables are not all sent is skipped), in the operation the request
//!    selects;
//! 2. the complexity of a field priced by a function (`first: $n`) reads its variables;
//! 3. nothing else: variables never change which rules pass.
//!
//! So a verdict reached once answers for another request of the same document when
//! - the document has one operation and the request selects it (the transport checks this
//!   before it attaches the memo);
//! - every variable is used only as a whole argument value (`input: $input`, not
//!   `input: {key: $k}`), and not as an argument of a field priced by a function: its position's
//!   type is then the argument's, which validation proved no stricter than the variable's
//!   declared type (`VariableInAllowedPosition`), and no price depends on it;
//! - every value sent is surely valid for its variable's declared type (with `!` added when it
//!   is nullable with a default, as validation reads it). [`surely_valid`] accepts a subset of
//!   what async-graphql accepts; for anything else the full validation runs, so its errors are
//!   exactly the library's.
//!
//! The tests (`validation_memo/tests.rs`) run documents and variable values both ways and
//! compare the answers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{Name, Positioned, ServerError, ServerResult, ValidationResult, Variables};
use async_graphql_value::Value;

/// The validation verdict of one single-operation document, shared by every request naming it.
#[derive(Clone)]
pub struct ValidationMemo(Arc<Memo>);

struct Memo {
    /// Each declared variable and the type a sent value must surely satisfy.
    variables: Vec<(Name, String)>,
    /// Whether every variable is a whole argument value; whether none is priced is decided
    /// against the schema on first use.
    whole_arguments: bool,
    transferable: OnceLock<bool>,
    /// Fields with a variable argument, to look up in the schema's priced fields.
    fields_with_variables: Vec<Name>,
    verdict: OnceLock<ValidationResult>,
}

impl ValidationMemo {
    /// A memo for a document of one operation; `None` for several.
    pub fn for_document(document: &ExecutableDocument) -> Option<Self> {
        let operation = match &document.operations {
            DocumentOperations::Single(operation) => &operation.node,
            DocumentOperations::Multiple(operations) if operations.len() == 1 => {
                &operations.values().next()?.node
            }
            DocumentOperations::Multiple(_) => return None,
        };
        let variables = operation
            .variable_definitions
            .iter()
            .map(|definition| {
                let definition = &definition.node;
                let mut ty = definition.var_type.node.to_string();
                if definition.var_type.node.nullable && definition.default_value.is_some() {
                    ty.push('!');
                }
                (definition.name.node.clone(), ty)
            })
            .collect();
        let mut usage = Usage::default();
        usage.operation(operation);
        for fragment in document.fragments.values() {
            usage.directives(&fragment.node.directives);
            usage.selection_set(&fragment.node.selection_set.node);
        }
        Some(ValidationMemo(Arc::new(Memo {
            variables,
            whole_arguments: usage.whole_arguments,
            transferable: OnceLock::new(),
            fields_with_variables: usage.fields.into_iter().collect(),
            verdict: OnceLock::new(),
        })))
    }

    /// Whether the remembered verdict, if any, answers for a request with `variables`.
    fn answers_for(&self, registry: &Registry, variables: &Variables) -> bool {
        let memo = &self.0;
        let transferable = *memo.transferable.get_or_init(|| {
            let priced = priced_fields(registry);
            memo.whole_arguments
                && memo
                    .fields_with_variables
                    .iter()
                    .all(|field| !priced.contains(field.as_str()))
        });
        transferable
            && memo.variables.iter().all(|(name, ty)| {
                variables
                    .get(name)
                    .is_none_or(|value| surely_valid(registry, ty, value))
            })
    }
}

/// Where a document uses variables.
struct Usage {
    whole_arguments: bool,
    fields: HashSet<Name>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            whole_arguments: true,
            fields: HashSet::new(),
        }
    }
}

impl Usage {
    fn operation(&mut self, operation: &OperationDefinition) {
        self.directives(&operation.directives);
        self.selection_set(&operation.selection_set.node);
    }

    fn selection_set(&mut self, set: &SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field
                        .arguments
                        .iter()
                        .any(|(_, value)| self.argument(&value.node))
                    {
                        self.fields.insert(field.name.node.clone());
                    }
                    self.directives(&field.directives);
                    self.selection_set(&field.selection_set.node);
                }
                Selection::FragmentSpread(spread) => self.directives(&spread.node.directives),
                Selection::InlineFragment(inline) => {
                    self.directives(&inline.node.directives);
                    self.selection_set(&inline.node.selection_set.node);
                }
            }
        }
    }

    fn directives(&mut self, directives: &[Positioned<Directive>]) {
        for directive in directives {
            for (_, value) in &directive.node.arguments {
                self.argument(&value.node);
            }
        }
    }

    /// Whether the argument is a variable; notes a variable inside a literal.
    fn argument(&mut self, value: &Value) -> bool {
        match value {
            Value::Variable(_) => true,
            literal => {
                if contains_variable(literal) {
                    self.whole_arguments = false;
                }
                false
            }
        }
    }
}

fn contains_variable(value: &Value) -> bool {
    match value {
        Value::Variable(_) => true,
        Value::List(items) => items.iter().any(contains_variable),
        Value::Object(fields) => fields.values().any(contains_variable),
        Value::Null
        | Value::Number(_)
        | Value::String(_)
        | Value::Boolean(_)
        | Value::Binary(_)
        | Value::Enum(_) => false,
    }
}

/// Names of the fields whose complexity is computed from their arguments.
fn priced_fields(registry: &Registry) -> HashSet<&str> {
    registry
        .types
        .values()
        .filter_map(|ty| match ty {
            MetaType::Object { fields, .. } | MetaType::Interface { fields, .. } => Some(fields),
            _ => None,
        })
        .flat_map(|fields| fields.values())
        .filter(|field| field.compute_complexity.is_some())
        .map(|field| field.name.as_str())
        .collect()
}

/// `true` only when async-graphql's own check (`is_valid_input_value`) surely accepts `value`
/// for `ty`; `false` also for what it might accept (a single value for a list, a one-of input):
/// those requests take the full validation.
fn surely_valid(registry: &Registry, ty: &str, value: &async_graphql::Value) -> bool {
    use async_graphql::Value as Const;
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(inner) => {
            !matches!(value, Const::Null) && surely_valid(registry, inner, value)
        }
        MetaTypeName::List(inner) => match value {
            Const::List(items) => items.iter().all(|item| surely_valid(registry, inner, item)),
            Const::Null => true,
            _ => false,
        },
        MetaTypeName::Named(_) if matches!(value, Const::Null) => true,
        MetaTypeName::Named(name) => match registry.types.get(name) {
            Some(MetaType::Scalar {
                is_valid: Some(is_valid),
                ..
            }) => is_valid(value),
            Some(MetaType::Scalar { is_valid: None, .. }) => true,
            Some(MetaType::Enum { enum_values, .. }) => match value {
                Const::Enum(name) => enum_values.contains_key(name.as_str()),
                Const::String(name) => enum_values.contains_key(name.as_str()),
                _ => false,
            },
            Some(MetaType::InputObject {
                input_fields,
                oneof: false,
                ..
            }) => match value {
                Const::Object(values) => {
                    values
                        .keys()
                        .all(|key| input_fields.contains_key(key.as_str()))
                        && input_fields.values().all(|field| {
                            match values.get(field.name.as_str()) {
                                Some(value) => surely_valid(registry, &field.ty, value),
                                None => {
                                    !MetaTypeName::create(&field.ty).is_non_null()
                                        || field.default_value.is_some()
                                }
                            }
                        })
                }
                _ => false,
            },
            _ => false,
        },
    }
}

/// Answers validation from the request's [`ValidationMemo`] when its verdict answers for the
/// request's variables; otherwise validates and remembers a success (a refusal is recomputed,
/// so its errors stay exact).
pub struct RememberedValidation;

impl ExtensionFactory for RememberedValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RememberedValidationRun::default())
    }
}

/// One request's run: the variables are seen when the document is parsed, the verdict is
/// needed at validation.
#[derive(Default)]
struct RememberedValidationRun {
    answered: AtomicBool,
}

#[async_trait::async_trait]
impl Extension for RememberedValidationRun {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let Some(memo) = ctx.data_opt::<ValidationMemo>() {
            let answered = memo.0.verdict.get().is_some()
                && memo.answers_for(&ctx.schema_env.registry, variables);
            self.answered.store(answered, Ordering::Relaxed);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let Some(memo) = ctx.data_opt::<ValidationMemo>() else {
            return next.run(ctx).await;
        };
        let answered = self.answered.load(Ordering::Relaxed);
        if let (true, Some(verdict)) = (answered, memo.0.verdict.get()) {
            return Ok(*verdict);
        }
        let verdict = next.run(ctx).await?;
        let _ = memo.0.verdict.set(verdict);
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests;
