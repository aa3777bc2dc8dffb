//! The earn event log: every event the award step evaluated (mini-app actions, purchases,
//! registration and join, referral rewards), paid or not, one lean row in `earn_events`, written
//! by one `INSERT` inside the posting's transaction (so it commits or rolls back with the
//! postings). Replay (`replay.rs`) runs a ruleset over these rows; the `actionCountAtLeast`
//! condition counts them.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use loyalty_entities::earn_events;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait,
};

use crate::earning::rules::conditions::ActionCounts;
use crate::earning::rules::ActionRequest;
use crate::ledger::db::{sum_of, TxResult};
use crate::ledger::{Account, Posting, Tx};
use crate::periods::Windows;

/// Writes the event `request` (with what `posted` paid on POINTS) for the transaction's member.
/// `reference` is the award's reference; a purchase's (`("order", id)`) gives the order id its
/// lines are found by.
pub(crate) async fn record(
    tx: &mut Tx<'_>,
    request: &ActionRequest,
    reference: Option<(&str, &str)>,
    posted: &[Posting],
) -> TxResult<()> {
    let points_minor = posted
        .iter()
        .filter(|p| p.account == Account::Points)
        .fold(0_i64, |sum, p| sum.saturating_add(p.amount.minor()));
    let order_id = reference
        .filter(|(kind, _)| *kind == "order")
        .map(|(_, id)| id.to_owned());
    // Nothing in the posting reads it back: it goes with the posting's last statement.
    let insert = earn_events::Entity::insert(earn_events::ActiveModel {
        program_id: Set(tx.program.id),
        member_id: Set(tx.member.id),
        action: Set(request.action.clone()),
        object_id: Set(request.object_id.clone()),
        amount_minor: Set(request.amount.map(|a| a.minor())),
        order_id: Set(order_id),
        chosen_minor: Set(request.points.map(|p| p.minor())),
        tier_id: Set(tx.member.tier_id),
        points_minor: Set(points_minor),
        created_at: Set(tx.now),
        ..Default::default()
    })
    .build(tx.txn.get_database_backend());
    tx.write_later("earn_events", insert).await
}

#[derive(FromQueryResult)]
struct CountRow {
    lifetime: i64,
    in_day: Option<i64>,
    in_week: Option<i64>,
    in_month: Option<i64>,
}

/// This event's place among the member's events of `action` (this one included: it is written
/// at the end of the award step) in the local day, week and month of `now`, and ever. One query
/// on the `(member_id, action, created_at)` index, under the member's lock, so concurrent events
/// of the same member are counted one after the other.
pub(crate) async fn action_counts<C: ConnectionTrait>(
    conn: &C,
    member_id: i64,
    action: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<ActionCounts, sea_orm::DbErr> {
    let w = Windows::at(tz, now);
    let since = |at: DateTime<Utc>| {
        sum_of(Expr::case(earn_events::Column::CreatedAt.gte(at), 1).finally(0))
    };
    let row = earn_events::Entity::find()
        .select_only()
        .column_as(Expr::col(earn_events::Column::Id).count(), "lifetime")
        .column_as(since(w.day_start), "in_day")
        .column_as(since(w.week_start), "in_week")
        .column_as(since(w.month_start), "in_month")
        .filter(earn_events::Column::MemberId.eq(member_id))
        .filter(earn_events::Column::Action.eq(action))
        .into_model::<CountRow>()
        .one(conn)
        .await?;
    let this_one = |before: Option<i64>| {
        u32::try_from(before.unwrap_or_default().saturating_add(1)).unwrap_or(u32::MAX)
    };
    Ok(match row {
        Some(row) => ActionCounts {
            action: action.to_owned(),
            day: this_one(row.in_day),
            week: this_one(row.in_week),
            month: this_one(row.in_month),
            lifetime: this_one(Some(row.lifetime)),
        },
        None => ActionCounts {
            action: action.to_owned(),
            day: 1,
            week: 1,
            month: 1,
            lifetime: 1,
        },
    })
}
