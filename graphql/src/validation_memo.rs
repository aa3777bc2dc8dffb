//! Validation remembered for a persisted document, so a request that names it by hash skips
//! the validation pass as well as parsing.
//!
//! Only sound where the verdict cannot depend on the request: async-graphql's validation reads
//! the request's variables (their values against the arguments they fill, and the `first` a
//! paginated field is priced with) and, for those variables only, the operation name. A
//! document that declares no variables references none (validation refuses an undefined one),
//! so its verdict is a function of the document and the schema alone. The transport attaches a
//! [`ValidationMemo`] only to such documents; every other request is validated in full.

use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ValidationResult};

/// The verdict of one document once it passed validation; shared by every request naming it.
#[derive(Clone, Default)]
pub struct ValidationMemo(Arc<OnceLock<ValidationResult>>);

impl ValidationMemo {
    /// A memo for `document`, or `None` when its validation depends on the request.
    pub fn for_document(document: &ExecutableDocument) -> Option<Self> {
        let declares_variables = document
            .operations
            .iter()
            .any(|(_, operation)| !operation.node.variable_definitions.is_empty());
        (!declares_variables).then(Self::default)
    }
}

/// Answers validation from the request's [`ValidationMemo`] when it holds a verdict; otherwise
/// validates and remembers a success (a refusal is recomputed, so its errors stay exact).
pub struct RememberedValidation;

impl ExtensionFactory for RememberedValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RememberedValidation)
    }
}

#[async_trait::async_trait]
impl Extension for RememberedValidation {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let Some(memo) = ctx.data_opt::<ValidationMemo>() else {
            return next.run(ctx).await;
        };
        if let Some(verdict) = memo.0.get() {
            return Ok(*verdict);
        }
        let verdict = next.run(ctx).await?;
        let _ = memo.0.set(verdict);
        Ok(verdict)
    }
}
