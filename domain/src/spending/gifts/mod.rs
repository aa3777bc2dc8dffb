//! Gifts: a catalogue admins keep (cost, optional stock, optional per-member limit), bought with
//! points (`redeemGift`) or won on the wheel ([`grant_gift`]). A redemption goes `PENDING` →
//! `FULFILLED` | `CANCELLED`; cancelling refunds the points and puts the gift back in stock.
//!
//! No oversell: tracked stock only moves through one conditional `UPDATE … WHERE stock > 0`
//! (backed by `CHECK (stock >= 0)`), in the same transaction as the debit and the redemption
//! row, so a refused or failed redemption leaves stock, balance and redemptions untouched. The
//! per-member limit is counted under the member's lock, which serialises one member's requests.

mod catalogue;
mod redeem;

use chrono::{DateTime, Utc};
use loyalty_entities::{gifts, redemptions};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};
use crate::ledger::Posting;
use crate::money::Points;
use crate::stored::{stored_enum, Stored};

pub use catalogue::{demo_gifts, GiftInput, MAX_GIFTS, MAX_PER_MEMBER_LIMIT, MAX_STOCK};
pub(crate) use redeem::{grant_gift, grant_gift_as};

#[cfg(test)]
pub(crate) mod test_support;

/// The spend purpose (report key) of gift redemptions and of their refunds.
pub const PURPOSE: &str = "gift_redemption";

/// A gift of the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gift {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub image_url: Option<String>,
    pub cost: Points,
    /// What is left; `None` = unlimited.
    pub stock: Option<i32>,
    pub per_member_limit: Option<i32>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Gift {
    /// Whether a member could redeem it now (not archived, stock unlimited or left).
    pub fn in_stock(&self) -> bool {
        available(self.archived_at, self.stock)
    }
}

fn available(archived_at: Option<DateTime<Utc>>, stock: Option<i32>) -> bool {
    archived_at.is_none() && stock.is_none_or(|s| s > 0)
}

impl From<gifts::Model> for Gift {
    fn from(m: gifts::Model) -> Self {
        Gift {
            id: m.id,
            name: m.name,
            description: m.description,
            image_url: m.image_url,
            cost: Points::from_minor(m.cost_minor),
            stock: m.stock,
            per_member_limit: m.per_member_limit,
            archived_at: m.archived_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedemptionStatus {
    Pending,
    Fulfilled,
    Cancelled,
}

stored_enum!(RedemptionStatus {
    Pending => "PENDING",
    Fulfilled => "FULFILLED",
    Cancelled => "CANCELLED",
});

/// How a member got the gift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedemptionOrigin {
    /// Bought with points (`redeemGift`).
    Redeem,
    /// Won on the lucky wheel (cost 0, no debit).
    Wheel,
    /// A challenge's completion reward (cost 0, no debit).
    Challenge,
}

stored_enum!(RedemptionOrigin {
    Redeem => "redeem",
    Wheel => "wheel",
    Challenge => "challenge",
});

/// A member's claim on a gift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub id: i64,
    pub member_id: i64,
    pub gift_id: i64,
    pub gift_name: String,
    /// Points paid (0 for wheel prizes); a cancellation refunds exactly this.
    pub cost: Points,
    pub status: RedemptionStatus,
    pub origin: RedemptionOrigin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Redemption {
    fn from_model(m: redemptions::Model, gift_name: String) -> DomainResult<Self> {
        Ok(Redemption {
            id: m.id,
            member_id: m.member_id,
            gift_id: m.gift_id,
            gift_name,
            cost: Points::from_minor(m.cost_minor),
            status: RedemptionStatus::read("redemptions.status", &m.status)?,
            origin: RedemptionOrigin::read("redemptions.origin", &m.origin)?,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// What `redeemGift` answers (and stores under the idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemOutcome {
    pub redemption: Redemption,
    pub balance: Points,
    pub transaction: Posting,
}

/// What `cancelRedemption` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOutcome {
    pub redemption: Redemption,
    /// The member's balance after the refund.
    pub balance: Points,
    /// The `REFUND` posting (`None` for a wheel prize, which cost nothing).
    pub transaction: Option<Posting>,
}

/// Whether a gift exists in the program, is not archived and has stock (or unlimited stock).
/// For the wheel: an exhausted prize must refuse the spin before anything is debited.
pub async fn gift_in_stock<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    gift_id: i64,
) -> DomainResult<bool> {
    Ok(prize_in_stock(
        find_gift(conn, program_id, gift_id).await?.as_ref(),
        program_id,
    ))
}

/// [`gift_in_stock`] for a gift row already read (with the wheel segment it is the prize of):
/// `None` is a gift that does not exist.
pub(crate) fn prize_in_stock(gift: Option<&gifts::Model>, program_id: i64) -> bool {
    gift.is_some_and(|g| g.program_id == program_id && available(g.archived_at, g.stock))
}

pub(crate) async fn find_gift<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    gift_id: i64,
) -> Result<Option<gifts::Model>, sea_orm::DbErr> {
    gifts::Entity::find_by_id(gift_id)
        .filter(gifts::Column::ProgramId.eq(program_id))
        .one(conn)
        .await
}

fn gift_not_found(gift_id: i64) -> DomainError {
    DomainError::not_found(format!("gift {gift_id} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_needs_stock_and_no_archive() {
        let now = Utc::now();
        assert!(available(None, None));
        assert!(available(None, Some(1)));
        assert!(!available(None, Some(0)));
        assert!(!available(Some(now), None));
    }
}
