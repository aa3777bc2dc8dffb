//! Member attributes: a small map of string → string the service role sets
//! (`setMemberAttributes`) and campaign conditions compare (`memberAttributeEquals`). Stored as
//! a JSON object in `members.attributes`, written under the member's lock, so an award sees
//! either the attributes before a change or after it, never half of it.

use std::collections::{BTreeMap, HashSet};

use loyalty_entities::members;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::earning::rules::conditions::{
    is_attribute_key, MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS,
};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::Tx;
use crate::program::Program;
use crate::service::Loyalty;

/// At most this many attributes on one member.
pub const MAX_MEMBER_ATTRIBUTES: usize = 20;
/// At most this many changes in one call (replacing every attribute takes twice the maximum).
pub const MAX_ATTRIBUTE_CHANGES: usize = 2 * MAX_MEMBER_ATTRIBUTES;

/// A member's attributes, by key.
pub type Attributes = BTreeMap<String, String>;

/// One change: set `key` to `value`, or remove it (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttributeChange {
    pub key: String,
    pub value: Option<String>,
}

/// The attributes as stored in `members.attributes` (a JSON object).
pub(crate) fn stored(text: &str) -> DomainResult<Attributes> {
    serde_json::from_str(text)
        .map_err(|err| DomainError::internal(format!("members.attributes: {err}")))
}

/// Refuses the first bad change with the path of its field (`attributes[2].value: ...`).
fn validate(changes: &[AttributeChange]) -> DomainResult<()> {
    if changes.len() > MAX_ATTRIBUTE_CHANGES {
        return Err(DomainError::validation(format!(
            "attributes: at most {MAX_ATTRIBUTE_CHANGES} changes in one call"
        )));
    }
    let sets = changes.iter().filter(|c| c.value.is_some()).count();
    if sets > MAX_MEMBER_ATTRIBUTES {
        return Err(DomainError::validation(format!(
            "attributes: a member has at most {MAX_MEMBER_ATTRIBUTES} attributes \
             (this call sets {sets})"
        )));
    }
    let mut seen = HashSet::with_capacity(changes.len());
    for (index, change) in changes.iter().enumerate() {
        let path = format!("attributes[{index}]");
        if !is_attribute_key(&change.key) {
            return Err(DomainError::validation(format!(
                "{path}.key: must be 1 to {MAX_ATTRIBUTE_KEY_CHARS} characters of a-z, 0-9 and _"
            )));
        }
        if !seen.insert(change.key.as_str()) {
            return Err(DomainError::validation(format!(
                "{path}.key: \"{}\" is changed twice in this call",
                change.key
            )));
        }
        if let Some(value) = &change.value {
            if value.is_empty() || value.chars().count() > MAX_ATTRIBUTE_VALUE_CHARS {
                return Err(DomainError::validation(format!(
                    "{path}.value: must be 1 to {MAX_ATTRIBUTE_VALUE_CHARS} characters \
                     (null removes the key)"
                )));
            }
        }
    }
    Ok(())
}

/// Applies validated changes to the member's attributes under its lock.
#[derive(Clone, Serialize)]
struct SetAttributesOp {
    member_id: i64,
    changes: Vec<AttributeChange>,
}

#[async_trait::async_trait]
impl Operation for SetAttributesOp {
    type Output = Attributes;
    const NAME: &'static str = "setMemberAttributes";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Attributes> {
        let mut attributes = stored(&tx.member.attributes)?;
        for change in &self.changes {
            match &change.value {
                Some(value) => attributes.insert(change.key.clone(), value.clone()),
                None => attributes.remove(&change.key),
            };
        }
        if attributes.len() > MAX_MEMBER_ATTRIBUTES {
            return Err(DomainError::validation(format!(
                "attributes: a member has at most {MAX_MEMBER_ATTRIBUTES} attributes \
                 (this would make {})",
                attributes.len()
            ))
            .into());
        }
        let text = serde_json::to_string(&attributes).map_err(DomainError::internal)?;
        if text != tx.member.attributes {
            members::Entity::update_many()
                .col_expr(members::Column::Attributes, Expr::value(text.clone()))
                .filter(members::Column::Id.eq(tx.member.id))
                .exec(tx.txn)
                .await?;
            tx.member.attributes = text;
        }
        Ok(attributes)
    }
}

impl Loyalty {
    /// Sets (or, with a `None` value, removes) attributes of the member with this external id
    /// and returns all of them. Like every service call naming a member, an unknown member
    /// joins the program first (after the input is validated).
    pub async fn set_member_attributes(
        &self,
        program: &Program,
        member_external_id: &str,
        changes: Vec<AttributeChange>,
    ) -> DomainResult<Attributes> {
        validate(&changes)?;
        let (member_id, _) = self
            .find_or_join(program, member_external_id.trim(), None, false, None)
            .await?;
        let op = SetAttributesOp { member_id, changes };
        self.execute(program, &op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: Option<&str>) -> AttributeChange {
        AttributeChange {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    fn refusal(changes: &[AttributeChange]) -> String {
        match validate(changes) {
            Err(DomainError::Validation(message)) => message,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_bound_is_refused_with_the_path_of_the_bad_field() {
        assert_eq!(
            validate(&[change("city", Some("hanoi")), change("vip", None)]),
            Ok(())
        );
        let long_key = "k".repeat(MAX_ATTRIBUTE_KEY_CHARS);
        let long_value = "é".repeat(MAX_ATTRIBUTE_VALUE_CHARS);
        assert_eq!(validate(&[change(&long_key, Some(&long_value))]), Ok(()));
        assert!(refusal(&[change("ok", None), change("City", Some("x"))])
            .starts_with("attributes[1].key: must be 1 to 64 characters"));
        assert!(refusal(&[change("", Some("x"))]).starts_with("attributes[0].key:"));
        assert!(refusal(&[change(&format!("{long_key}k"), Some("x"))])
            .starts_with("attributes[0].key:"));
        assert!(refusal(&[change("a-b", Some("x"))]).starts_with("attributes[0].key:"));
        assert!(refusal(&[change("a", Some(""))])
            .starts_with("attributes[0].value: must be 1 to 256 characters"));
        assert!(refusal(&[change("a", Some(&format!("{long_value}x")))])
            .starts_with("attributes[0].value:"));
        assert_eq!(
            refusal(&[change("a", Some("1")), change("a", None)]),
            "attributes[1].key: \"a\" is changed twice in this call"
        );
        let many: Vec<_> = (0..=MAX_ATTRIBUTE_CHANGES)
            .map(|n| change(&format!("k{n}"), None))
            .collect();
        assert_eq!(refusal(&many), "attributes: at most 40 changes in one call");
        let sets: Vec<_> = (0..=MAX_MEMBER_ATTRIBUTES)
            .map(|n| change(&format!("k{n}"), Some("v")))
            .collect();
        assert_eq!(
            refusal(&sets),
            "attributes: a member has at most 20 attributes (this call sets 21)"
        );
    }

    #[test]
    fn stored_attributes_read_back_or_name_the_column() {
        assert_eq!(stored("{}"), Ok(Attributes::new()));
        assert_eq!(
            stored(r#"{"city":"hanoi"}"#),
            Ok(Attributes::from([("city".to_owned(), "hanoi".to_owned())]))
        );
        assert!(
            matches!(stored("[1]"), Err(DomainError::Internal(m)) if m.contains("members.attributes"))
        );
    }
}
