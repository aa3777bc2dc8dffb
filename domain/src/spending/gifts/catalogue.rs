//! The gift catalogue: admins create, edit and archive gifts; members browse the active ones.

use loyalty_entities::gifts;
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{find_gift, gift_not_found, Gift};
use crate::error::{DomainError, DomainResult};
use crate::money::Points;
use crate::program::Program;
use crate::service::Loyalty;

/// Most gifts (archived ones included) a program may have: the catalogue is one list.
pub const MAX_GIFTS: u64 = 500;
pub const MAX_STOCK: i32 = 1_000_000_000;
pub const MAX_PER_MEMBER_LIMIT: i32 = 10_000;
const MAX_NAME_LEN: usize = 200;
const MAX_DESCRIPTION_LEN: usize = 5_000;
const MAX_URL_LEN: usize = 2_000;

/// An admin's gift edit (create or update: every field is replaced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GiftInput {
    pub name: String,
    pub description: Option<String>,
    pub image_url: Option<String>,
    /// Points, two fraction digits at most.
    pub cost: Decimal,
    /// What is left to redeem; `None` = unlimited.
    pub stock: Option<i32>,
    /// Most non-cancelled redemptions one member may hold; `None` = no limit.
    pub per_member_limit: Option<i32>,
}

/// A validated [`GiftInput`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct ValidGift {
    name: String,
    description: Option<String>,
    image_url: Option<String>,
    cost: Points,
    stock: Option<i32>,
    per_member_limit: Option<i32>,
}

fn optional_text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl GiftInput {
    fn validate(&self) -> DomainResult<ValidGift> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(DomainError::validation(format!(
                "name must be 1–{MAX_NAME_LEN} characters"
            )));
        }
        let description = optional_text(self.description.as_deref());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
        {
            return Err(DomainError::validation(format!(
                "description must be at most {MAX_DESCRIPTION_LEN} characters"
            )));
        }
        let image_url = optional_text(self.image_url.as_deref());
        if let Some(url) = &image_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > MAX_URL_LEN || url.chars().any(char::is_whitespace) {
                return Err(DomainError::validation(format!(
                    "imageUrl must be an http(s) URL of at most {MAX_URL_LEN} characters"
                )));
            }
        }
        let cost = Points::parse(self.cost, "cost")?;
        if !cost.is_positive() {
            return Err(DomainError::validation("cost must be positive"));
        }
        if self.stock.is_some_and(|s| !(0..=MAX_STOCK).contains(&s)) {
            return Err(DomainError::validation(format!(
                "stock must be between 0 and {MAX_STOCK} (leave it out for unlimited)"
            )));
        }
        if self
            .per_member_limit
            .is_some_and(|l| !(1..=MAX_PER_MEMBER_LIMIT).contains(&l))
        {
            return Err(DomainError::validation(format!(
                "perMemberLimit must be between 1 and {MAX_PER_MEMBER_LIMIT} (leave it out for none)"
            )));
        }
        Ok(ValidGift {
            name: name.to_owned(),
            description,
            image_url,
            cost,
            stock: self.stock,
            per_member_limit: self.per_member_limit,
        })
    }
}

impl Loyalty {
    /// The catalogue, oldest first: active gifts, or every gift with `include_archived`.
    pub async fn gifts(
        &self,
        program: &Program,
        include_archived: bool,
    ) -> DomainResult<Vec<Gift>> {
        let mut query = gifts::Entity::find()
            .filter(gifts::Column::ProgramId.eq(program.id))
            .order_by_asc(gifts::Column::Id)
            .limit(MAX_GIFTS);
        if !include_archived {
            query = query.filter(gifts::Column::ArchivedAt.is_null());
        }
        Ok(query
            .all(self.db())
            .await?
            .into_iter()
            .map(Gift::from)
            .collect())
    }

    /// A gift of the program (archived ones too); `NOT_FOUND` for other programs' gifts.
    pub async fn gift(&self, program: &Program, gift_id: i64) -> DomainResult<Gift> {
        find_gift(self.db(), program.id, gift_id)
            .await?
            .map(Gift::from)
            .ok_or_else(|| gift_not_found(gift_id))
    }

    pub async fn create_gift(&self, program: &Program, input: GiftInput) -> DomainResult<Gift> {
        let gift = input.validate()?;
        let existing = gifts::Entity::find()
            .filter(gifts::Column::ProgramId.eq(program.id))
            .count(self.db())
            .await?;
        if existing >= MAX_GIFTS {
            return Err(DomainError::LimitReached(format!(
                "a program has at most {MAX_GIFTS} gifts"
            )));
        }
        let now = self.now();
        let row = gifts::Entity::insert(gifts::ActiveModel {
            program_id: Set(program.id),
            name: Set(gift.name),
            description: Set(gift.description),
            image_url: Set(gift.image_url),
            cost_minor: Set(gift.cost.minor()),
            stock: Set(gift.stock),
            per_member_limit: Set(gift.per_member_limit),
            archived_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec_with_returning(self.db())
        .await?;
        Ok(row.into())
    }

    /// Replaces a gift's fields. `stock` sets what is left from now on; redemptions already
    /// made keep their cost. Archived gifts cannot be edited (`VALIDATION`).
    pub async fn update_gift(
        &self,
        program: &Program,
        gift_id: i64,
        input: GiftInput,
    ) -> DomainResult<Gift> {
        let gift = input.validate()?;
        let updated = gifts::Entity::update_many()
            .col_expr(gifts::Column::Name, Expr::value(gift.name))
            .col_expr(gifts::Column::Description, Expr::value(gift.description))
            .col_expr(gifts::Column::ImageUrl, Expr::value(gift.image_url))
            .col_expr(gifts::Column::CostMinor, Expr::value(gift.cost.minor()))
            .col_expr(gifts::Column::Stock, Expr::value(gift.stock))
            .col_expr(
                gifts::Column::PerMemberLimit,
                Expr::value(gift.per_member_limit),
            )
            .col_expr(gifts::Column::UpdatedAt, Expr::value(self.now()))
            .filter(gifts::Column::Id.eq(gift_id))
            .filter(gifts::Column::ProgramId.eq(program.id))
            .filter(gifts::Column::ArchivedAt.is_null())
            .exec_with_returning(self.db())
            .await?
            .into_iter()
            .next();
        match updated {
            Some(row) => Ok(row.into()),
            None => {
                let gift = self.gift(program, gift_id).await?;
                Err(DomainError::validation(format!(
                    "gift `{}` is archived and can no longer be edited",
                    gift.name
                )))
            }
        }
    }

    /// Takes a gift out of the catalogue (idempotent). Pending redemptions stay valid.
    pub async fn archive_gift(&self, program: &Program, gift_id: i64) -> DomainResult<Gift> {
        let now = self.now();
        gifts::Entity::update_many()
            .col_expr(gifts::Column::ArchivedAt, Expr::value(Some(now)))
            .col_expr(gifts::Column::UpdatedAt, Expr::value(now))
            .filter(gifts::Column::Id.eq(gift_id))
            .filter(gifts::Column::ProgramId.eq(program.id))
            .filter(gifts::Column::ArchivedAt.is_null())
            .exec(self.db())
            .await?;
        self.gift(program, gift_id).await
    }
}

/// The demo program's gifts: one unlimited, one with stock and a limit, one scarce.
pub fn demo_gifts() -> Vec<GiftInput> {
    let gift = |name: &str, description: &str, cost: i64, stock, per_member_limit| GiftInput {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        image_url: None,
        cost: Decimal::from(cost),
        stock,
        per_member_limit,
    };
    vec![
        gift("Free coffee", "One coffee of any size", 50, None, None),
        gift(
            "Tote bag",
            "The shop's canvas tote",
            200,
            Some(100),
            Some(1),
        ),
        gift(
            "Wireless earbuds",
            "Limited edition",
            2_000,
            Some(10),
            Some(1),
        ),
    ]
}

impl Loyalty {
    /// Creates the demo gifts unless the program already has gifts (idempotent).
    pub(crate) async fn seed_demo_gifts(&self, program: &Program) -> DomainResult<()> {
        if self.gifts(program, true).await?.is_empty() {
            for gift in demo_gifts() {
                self.create_gift(program, gift).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn input() -> GiftInput {
        GiftInput {
            name: " Tote bag ".into(),
            description: Some("  ".into()),
            image_url: Some("https://cdn.example/tote.png".into()),
            cost: dec!(200),
            stock: Some(5),
            per_member_limit: Some(1),
        }
    }

    #[test]
    fn input_is_trimmed_and_parsed() {
        let gift = input().validate().unwrap();
        assert_eq!(gift.name, "Tote bag");
        assert_eq!(gift.description, None);
        assert_eq!(gift.cost, Points::from_minor(20_000));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let cases = [
            GiftInput {
                name: "".into(),
                ..input()
            },
            GiftInput {
                cost: dec!(0),
                ..input()
            },
            GiftInput {
                cost: dec!(1.005),
                ..input()
            },
            GiftInput {
                stock: Some(-1),
                ..input()
            },
            GiftInput {
                per_member_limit: Some(0),
                ..input()
            },
            GiftInput {
                image_url: Some("javascript:alert(1)".into()),
                ..input()
            },
        ];
        for case in cases {
            assert!(
                matches!(case.validate(), Err(DomainError::Validation(_))),
                "{case:?}"
            );
        }
    }
}
