//! Referrals: a new member who registers with a code gets the code's owner as referrer, once and
//! for ever. When the friend qualifies (on registration, or on the first purchase, per program),
//! `new_user_referral` pays the friend and `referrer_reward` pays the inviter, each once per
//! friend: the friend's rule is once per lifetime, the inviter's once per object (the friend),
//! so the ledger's unique keys back both up. Every posting touches one member: the friend's
//! transaction links, pays the friend and queues the inviter's reward (`work.rs`), which runs
//! as the inviter's own idempotent operation (`inviter.rs`) right after the commit.

mod inviter;

use loyalty_entities::{members, referrals};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

pub(crate) use inviter::pay_inviter;

use crate::earning::rules::ActionRequest;
use crate::error::DomainError;
use crate::ledger::db::{stmt, TxResult};
use crate::ledger::Tx;
use crate::periods::Windows;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// Why a referral was or was not linked, for the app to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReferralStatus {
    SelfReferral,
    AlreadyRegistered,
    AlreadyReferred,
    UnknownCode,
    OtherProgram,
    InviterCapReached,
    Pending,
    Rewarded,
}

/// What `referrals.status` holds: the link waits for the friend to qualify, then both are paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Pending,
    Rewarded,
}

stored_enum!(Stage {
    Pending => "PENDING",
    Rewarded => "REWARDED",
});

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralOutcome {
    pub status: ReferralStatus,
    pub reason: String,
}

fn outcome(status: ReferralStatus, reason: impl Into<String>) -> ReferralOutcome {
    ReferralOutcome {
        status,
        reason: reason.into(),
    }
}

/// Normalises a code as typed or scanned (`ref_` prefix from a start parameter, case, spaces).
pub fn normalise_code(code: &str) -> String {
    let code = code.trim();
    let code = code.strip_prefix("ref_").unwrap_or(code);
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_uppercase()
}

/// How many times linking counts the inviter's referrals again because another friend of the
/// same inviter took the place first.
const MAX_PLACE_RACES: usize = 32;

/// Links the locked, just-registered friend in `tx` to the owner of `code`.
///
/// The inviter is not locked (a posting touches one member): the caps are counted, and the
/// referral takes the next place among the inviter's (`referrals.ordinal`, unique per inviter).
/// Two friends of one inviter linked at once take the same place; the second waits for the
/// first's commit, inserts nothing, and counts again, so a cap is never passed.
pub(crate) async fn attribute(
    loyalty: &Loyalty,
    tx: &mut Tx<'_>,
    code: &str,
) -> TxResult<ReferralOutcome> {
    if tx.member.referrer_id.is_some() {
        return Ok(outcome(
            ReferralStatus::AlreadyReferred,
            "this member already has a referrer",
        ));
    }
    let code = normalise_code(code);
    let owner = members::Entity::find()
        .filter(members::Column::ReferralCode.eq(code.as_str()))
        .one(tx.txn)
        .await?;
    let Some(owner) = owner else {
        return Ok(outcome(
            ReferralStatus::UnknownCode,
            "no member has this referral code",
        ));
    };
    if owner.program_id != tx.program.id {
        return Ok(outcome(
            ReferralStatus::OtherProgram,
            "this code belongs to another program",
        ));
    }
    if owner.id == tx.member.id {
        return Ok(outcome(
            ReferralStatus::SelfReferral,
            "members cannot refer themselves",
        ));
    }
    let mut referral_id = None;
    for _ in 0..MAX_PLACE_RACES {
        let places = places_of(tx, owner.id).await?;
        if let Some(refusal) = over_cap(tx, &places) {
            return Ok(refusal);
        }
        referral_id = link(tx, owner.id, places.last + 1).await?;
        if referral_id.is_some() {
            break;
        }
    }
    let Some(referral_id) = referral_id else {
        return Err(DomainError::Conflict(
            "too many friends of this inviter are registering at once; try again".into(),
        )
        .into());
    };
    tx.member.referrer_id = Some(owner.id);
    tx.touch_member();
    if tx.program.referrals.on_first_purchase {
        return Ok(outcome(
            ReferralStatus::Pending,
            "rewards follow the first purchase",
        ));
    }
    reward(loyalty, tx, owner.id, referral_id).await?;
    Ok(outcome(ReferralStatus::Rewarded, REWARDED))
}

const REWARDED: &str = "the friend was rewarded; the inviter's reward follows";

/// The inviter's referrals as linking sees them: how many in all, today, and the last place.
#[derive(sea_orm::FromQueryResult)]
struct Places {
    all: i64,
    today: i64,
    last: i64,
}

async fn places_of(tx: &Tx<'_>, inviter_id: i64) -> TxResult<Places> {
    let today = Windows::at(tx.program.tz, tx.now).day_start;
    let row = tx
        .txn
        .query_one(stmt(
            tx.txn.get_database_backend(),
            "SELECT COUNT(*) AS all_n, \
               COALESCE(SUM(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0) AS today_n, \
               COALESCE(MAX(ordinal), 0) AS last_n \
             FROM referrals WHERE referrer_id = $1",
            vec![inviter_id.into(), today.into()],
        ))
        .await?
        .ok_or_else(|| DomainError::internal("an aggregate returned no row"))?;
    Ok(Places {
        all: row.try_get("", "all_n")?,
        today: row.try_get("", "today_n")?,
        last: row.try_get("", "last_n")?,
    })
}

fn over_cap(tx: &Tx<'_>, places: &Places) -> Option<ReferralOutcome> {
    let policy = tx.program.referrals;
    if policy
        .lifetime_cap
        .is_some_and(|cap| places.all >= i64::from(cap))
    {
        return Some(outcome(
            ReferralStatus::InviterCapReached,
            "the inviter reached their referral limit",
        ));
    }
    if policy
        .daily_cap
        .is_some_and(|cap| places.today >= i64::from(cap))
    {
        return Some(outcome(
            ReferralStatus::InviterCapReached,
            "the inviter reached today's referral limit",
        ));
    }
    None
}

/// Inserts the referral at `place`; `None` when another friend of the inviter took that place
/// (committed meanwhile: count again).
async fn link(tx: &Tx<'_>, inviter_id: i64, place: i64) -> TxResult<Option<i64>> {
    let row = tx
        .txn
        .query_one(stmt(
            tx.txn.get_database_backend(),
            "INSERT INTO referrals (program_id, referrer_id, referee_id, status, created_at, \
               ordinal) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
            vec![
                tx.program.id.into(),
                inviter_id.into(),
                tx.member.id.into(),
                Stage::Pending.as_str().into(),
                tx.now.into(),
                place.into(),
            ],
        ))
        .await?;
    match row {
        Some(row) => Ok(Some(row.try_get("", "id")?)),
        None => Ok(None),
    }
}

/// Pays a pending referral of the locked friend in `tx` if the program rewards on the first
/// purchase (called inside the purchase's transaction).
pub(crate) async fn qualify_on_purchase(loyalty: &Loyalty, tx: &mut Tx<'_>) -> TxResult<()> {
    if !tx.program.referrals.on_first_purchase || tx.member.referrer_id.is_none() {
        return Ok(());
    }
    let pending = referrals::Entity::find()
        .filter(referrals::Column::RefereeId.eq(tx.member.id))
        .filter(referrals::Column::Status.eq(Stage::Pending.as_str()))
        .one(tx.txn)
        .await?;
    let Some(referral) = pending else {
        return Ok(());
    };
    reward(loyalty, tx, referral.referrer_id, referral.id).await
}

/// The friend's side of a qualified referral, in the friend's transaction: the friend's reward,
/// the referral marked rewarded, and the inviter's reward queued as the inviter's own operation
/// (`inviter.rs`).
async fn reward(
    loyalty: &Loyalty,
    tx: &mut Tx<'_>,
    inviter_id: i64,
    referral_id: i64,
) -> TxResult<()> {
    let friend = ActionRequest {
        action: "referral_friend".into(),
        object_id: None,
        amount: None,
        ..Default::default()
    };
    loyalty
        .award(
            tx,
            &friend,
            None,
            Some(("referral", &referral_id.to_string())),
        )
        .await?;
    referrals::Entity::update_many()
        .col_expr(
            referrals::Column::Status,
            Expr::value(Stage::Rewarded.as_str()),
        )
        .col_expr(referrals::Column::RewardedAt, Expr::value(Some(tx.now)))
        .filter(referrals::Column::Id.eq(referral_id))
        .exec(tx.txn)
        .await?;
    let item = crate::work::Item {
        kind: crate::work::Kind::ReferralInviter,
        subject: referral_id.to_string(),
        program_id: tx.program.id,
        member_id: inviter_id,
    };
    crate::work::queue(loyalty, tx, item).await
}

/// The status of the friend's existing referral, for a repeated `register` with a code.
pub(crate) async fn existing(tx: &Tx<'_>, code: &str) -> TxResult<ReferralOutcome> {
    let referral = referrals::Entity::find()
        .filter(referrals::Column::RefereeId.eq(tx.member.id))
        .one(tx.txn)
        .await?;
    let owner = members::Entity::find()
        .filter(members::Column::ReferralCode.eq(normalise_code(code)))
        .one(tx.txn)
        .await?;
    Ok(match (referral, owner) {
        (Some(r), Some(o)) if r.referrer_id == o.id => {
            match Stage::read("referrals.status", &r.status)? {
                Stage::Rewarded => outcome(ReferralStatus::Rewarded, REWARDED),
                Stage::Pending => {
                    outcome(ReferralStatus::Pending, "rewards follow the first purchase")
                }
            }
        }
        (Some(_), _) => outcome(
            ReferralStatus::AlreadyReferred,
            "this member already has a referrer",
        ),
        (None, _) => outcome(
            ReferralStatus::AlreadyRegistered,
            "referral codes count only when registering for the first time",
        ),
    })
}

/// Clicks one referral code may record per second (burst twice that): landing pages are
/// public, so a code must not be flooded. Per instance.
pub const CLICKS_PER_CODE_PER_SEC: u32 = 20;

/// Rate limiter per referral code, on the service's clock (tests hold time still).
pub(crate) type CodeLimiter = governor::RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    ClockTime,
    governor::middleware::NoOpMiddleware<std::time::Duration>,
>;

/// The service's [`crate::clock::Clock`] as a governor clock.
#[derive(Clone)]
pub(crate) struct ClockTime(pub std::sync::Arc<dyn crate::clock::Clock>);

impl governor::clock::Clock for ClockTime {
    type Instant = std::time::Duration;

    fn now(&self) -> std::time::Duration {
        (self.0.now() - chrono::DateTime::UNIX_EPOCH)
            .to_std()
            .unwrap_or_default()
    }
}

pub(crate) fn code_limiter(clock: std::sync::Arc<dyn crate::clock::Clock>) -> CodeLimiter {
    let per_sec =
        std::num::NonZeroU32::new(CLICKS_PER_CODE_PER_SEC).unwrap_or(std::num::NonZeroU32::MIN);
    let burst =
        per_sec.saturating_mul(std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN));
    governor::RateLimiter::hashmap_with_clock(
        governor::Quota::per_second(per_sec).allow_burst(burst),
        ClockTime(clock),
    )
}

impl crate::service::Loyalty {
    /// Records a landing-page visit through a referral link. Public: no token. A visitor counts
    /// once per code per program day (`false` for a repeat); `NOT_FOUND` for an unknown code.
    pub async fn track_referral_click(
        &self,
        code: &str,
        visitor_id: &str,
    ) -> crate::error::DomainResult<bool> {
        let visitor_id = visitor_id.trim();
        if visitor_id.is_empty()
            || visitor_id.len() > 128
            || visitor_id.chars().any(char::is_control)
        {
            return Err(crate::error::DomainError::validation(
                "visitorId must be 1–128 printable characters",
            ));
        }
        let code = normalise_code(code);
        if code.is_empty() || code.len() > 32 {
            return Err(crate::error::DomainError::not_found(
                "unknown referral code",
            ));
        }
        if self.click_limiter().check_key(&code).is_err() {
            return Err(crate::error::DomainError::RateLimited(
                "too many clicks for this code; slow down".into(),
            ));
        }
        let owner = members::Entity::find()
            .filter(members::Column::ReferralCode.eq(code.as_str()))
            .one(self.db())
            .await?
            .ok_or_else(|| crate::error::DomainError::not_found("unknown referral code"))?;
        let program = self.program_by_id(owner.program_id).await?;
        let now = self.now();
        let day = crate::periods::local_date(program.tz, now).to_string();
        let inserted = loyalty_entities::referral_clicks::Entity::insert(
            loyalty_entities::referral_clicks::ActiveModel {
                program_id: Set(program.id),
                referrer_id: Set(owner.id),
                visitor_id: Set(visitor_id.to_owned()),
                day: Set(day),
                created_at: Set(now),
                ..Default::default()
            },
        )
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                loyalty_entities::referral_clicks::Column::ReferrerId,
                loyalty_entities::referral_clicks::Column::VisitorId,
                loyalty_entities::referral_clicks::Column::Day,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(self.db())
        .await?;
        Ok(inserted == 1)
    }
}

/// One inviter's line of the referral report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferralRow {
    pub member_id: i64,
    pub display_name: Option<String>,
    /// Referrals made in the period that were rewarded.
    pub total_referrals: u64,
    /// Referrals made in the period still waiting for the friend to qualify.
    pub pending_referrals: u64,
    pub clicks: u64,
}

/// The period's funnel: counted clicks → linked registrations → rewarded pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferralFunnel {
    pub clicks: u64,
    pub registrations: u64,
    pub rewarded: u64,
}

#[derive(sea_orm::FromQueryResult)]
struct Counted {
    member_id: i64,
    n: i64,
}

impl crate::service::Loyalty {
    /// Members by successful referrals in `[from, to)` (ties by member id), with pending
    /// referrals and clicks, and the funnel. An empty period is an empty list and zeros.
    pub async fn referral_report(
        &self,
        program: &crate::program::Program,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::DomainResult<(Vec<ReferralRow>, ReferralFunnel)> {
        use std::collections::BTreeMap;

        use sea_orm::QuerySelect;
        if from >= to {
            return Err(crate::error::DomainError::validation(
                "`from` must be before `to`",
            ));
        }
        let count_by = |status: Option<&'static str>| {
            let mut q = referrals::Entity::find()
                .select_only()
                .column_as(referrals::Column::ReferrerId, "member_id")
                .column_as(referrals::Column::Id.count(), "n")
                .filter(referrals::Column::ProgramId.eq(program.id))
                .filter(referrals::Column::CreatedAt.gte(from))
                .filter(referrals::Column::CreatedAt.lt(to))
                .group_by(referrals::Column::ReferrerId);
            if let Some(status) = status {
                q = q.filter(referrals::Column::Status.eq(status));
            }
            q.into_model::<Counted>()
        };
        let rewarded = count_by(Some(Stage::Rewarded.as_str()))
            .all(self.db())
            .await?;
        let pending = count_by(Some(Stage::Pending.as_str()))
            .all(self.db())
            .await?;
        let clicks = loyalty_entities::referral_clicks::Entity::find()
            .select_only()
            .column_as(
                loyalty_entities::referral_clicks::Column::ReferrerId,
                "member_id",
            )
            .column_as(loyalty_entities::referral_clicks::Column::Id.count(), "n")
            .filter(loyalty_entities::referral_clicks::Column::ProgramId.eq(program.id))
            .filter(loyalty_entities::referral_clicks::Column::CreatedAt.gte(from))
            .filter(loyalty_entities::referral_clicks::Column::CreatedAt.lt(to))
            .group_by(loyalty_entities::referral_clicks::Column::ReferrerId)
            .into_model::<Counted>()
            .all(self.db())
            .await?;
        let mut rows: BTreeMap<i64, ReferralRow> = BTreeMap::new();
        let n = |c: &Counted| u64::try_from(c.n).unwrap_or(0);
        let mut funnel = ReferralFunnel::default();
        for c in &rewarded {
            let r = rows
                .entry(c.member_id)
                .or_insert_with(|| empty_row(c.member_id));
            r.total_referrals = n(c);
            funnel.rewarded += n(c);
            funnel.registrations += n(c);
        }
        for c in &pending {
            let r = rows
                .entry(c.member_id)
                .or_insert_with(|| empty_row(c.member_id));
            r.pending_referrals = n(c);
            funnel.registrations += n(c);
        }
        for c in &clicks {
            let r = rows
                .entry(c.member_id)
                .or_insert_with(|| empty_row(c.member_id));
            r.clicks = n(c);
            funnel.clicks += n(c);
        }
        let names = members::Entity::find()
            .filter(members::Column::Id.is_in(rows.keys().copied()))
            .all(self.db())
            .await?;
        for m in names {
            if let Some(r) = rows.get_mut(&m.id) {
                r.display_name = m.display_name;
            }
        }
        let mut rows: Vec<ReferralRow> = rows.into_values().collect();
        rows.sort_by(|a, b| {
            b.total_referrals
                .cmp(&a.total_referrals)
                .then(a.member_id.cmp(&b.member_id))
        });
        Ok((rows, funnel))
    }
}

fn empty_row(member_id: i64) -> ReferralRow {
    ReferralRow {
        member_id,
        display_name: None,
        total_referrals: 0,
        pending_referrals: 0,
        clicks: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalised() {
        assert_eq!(normalise_code(" ref_ab3-k9 "), "AB3K9");
        assert_eq!(normalise_code("XYZ"), "XYZ");
    }
}
