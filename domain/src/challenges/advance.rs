//! Progress inside the posting transaction of the event that caused it (the award step every
//! earn path runs: actions, purchases, registration and join, referral rewards). So progress
//! commits or rolls back with the event, under its idempotency key: a retried key rolls the
//! run back to its savepoint and answers the first result, so it never counts twice.
//!
//! Per challenge the event may move (live set, enabled, a goal on the event's action, the
//! window open at the event's instant): the window's `challenge_progress` rows are read, the
//! pure [`apply_event`] moves them (a mission's open step only), the changed rows are written,
//! distinct values and a purchase's contribution are marked (`challenge_marks`), and when the
//! last goal completes the completion row is inserted with `ON CONFLICT DO NOTHING`: only the
//! statement that inserts it pays the reward, so it is paid once per member and window even
//! if the member lock were ever bypassed.
//!
//! A refund ([`take_back`]) lowers what the purchase added to `SUM_AMOUNT` goals in
//! proportion to the refunded amount, and takes its 1 back from `COUNT` goals once the order
//! is refunded in full. A completion stands: goals keep their `completed_at` and the reward is
//! not reclaimed.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use loyalty_entities::{
    challenge_completions, challenge_marks, challenge_progress, challenge_sets,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};
use serde::{Deserialize, Serialize};

use super::badges::{insert_member_badge, BadgeSource};
use super::model::{Challenge, ChallengeSet, Measure};
use super::progress::{apply_event, ChallengeState, GoalEvent, GoalState};
use super::window::{window_at, WindowSpan};
use crate::earning::rules::conditions::{Condition, Facts};
use crate::earning::rules::ActionRequest;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{TxError, TxResult};
use crate::ledger::{spins_amount, Account, Entry, Kind, Posting, Tx};
use crate::service::Loyalty;
use crate::spending::gifts::{grant_gift_as, RedemptionOrigin};

/// A challenge the event may move, with the window open at the event's instant.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub challenge: Challenge,
    pub window: WindowSpan,
}

/// What the event did to one challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub challenge_id: i64,
    pub window_key: String,
    /// The goals (positions) it moved.
    pub goals: Vec<usize>,
    /// This event completed the challenge (and paid its reward).
    pub completed: bool,
}

/// Every challenge the event moved, and the reward postings of those it completed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub moved: Vec<Moved>,
    pub posted: Vec<Posting>,
}

/// The report source of a challenge's points: `challenge_` and its name in lower case with
/// `_` for anything but a–z and 0–9 (at most 64 characters), so issued-by-source shows it as
/// "Challenge news explorer".
pub fn source_of(challenge: &Challenge) -> String {
    let words: Vec<String> = challenge
        .name
        .to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    if words.is_empty() {
        return format!("challenge_{}", challenge.id);
    }
    let slug: String = format!("challenge_{}", words.join("_"))
        .chars()
        .take(64)
        .collect();
    slug.trim_end_matches('_').to_owned()
}

/// Every goal condition of the candidates (so the facts they need are loaded).
pub(crate) fn conditions(candidates: &[Candidate]) -> Vec<&Condition> {
    candidates
        .iter()
        .flat_map(|c| c.challenge.goals.iter())
        .flat_map(|g| g.conditions.iter())
        .collect()
}

/// The live challenge set: the highest version's number (one indexed read), its body from the
/// per-instance cache.
pub(crate) async fn live_set<C: ConnectionTrait>(
    loyalty: &Loyalty,
    conn: &C,
    program_id: i64,
) -> DomainResult<Arc<ChallengeSet>> {
    let version = super::book::live_version(conn, program_id).await?;
    set_at(loyalty, conn, program_id, version).await
}

/// Published version `version` of the challenge set (0: none, empty), from the per-instance
/// cache or read with `conn`.
async fn set_at<C: ConnectionTrait>(
    loyalty: &Loyalty,
    conn: &C,
    program_id: i64,
    version: i64,
) -> DomainResult<Arc<ChallengeSet>> {
    if version == 0 {
        return Ok(Arc::new(ChallengeSet::default()));
    }
    if let Some(set) = loyalty.cached_challenge_set(program_id, version) {
        return Ok(set);
    }
    let row = challenge_sets::Entity::find()
        .filter(challenge_sets::Column::ProgramId.eq(program_id))
        .filter(challenge_sets::Column::Version.eq(version))
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::internal(format!("challenge set {version} vanished")))?;
    let challenges: Vec<Challenge> = serde_json::from_str(&row.challenges).map_err(|e| {
        DomainError::internal(format!(
            "challenge_sets.challenges of version {version}: {e}"
        ))
    })?;
    let set = Arc::new(ChallengeSet {
        version,
        challenges,
    });
    loyalty.cache_challenge_set(program_id, set.clone());
    Ok(set)
}

impl Loyalty {
    /// The live challenges an event of `action` may move now, in id order.
    pub(crate) async fn challenges_moved_by(
        &self,
        tx: &Tx<'_>,
        action: &str,
    ) -> TxResult<Vec<Candidate>> {
        // The version came with the member's lock, like the ruleset's: no read here.
        let set = set_at(self, tx.txn, tx.program.id, tx.challenge_version).await?;
        Ok(set
            .challenges
            .iter()
            .filter(|c| c.enabled && c.goals.iter().any(|g| g.action == action))
            .filter_map(|c| {
                let window = window_at(&c.window, tx.program.tz, tx.now)?;
                Some(Candidate {
                    challenge: c.clone(),
                    window,
                })
            })
            .collect())
    }
}

/// The mark of a distinct value (`challenge_marks.mark`).
fn distinct_mark(measure: Measure, value: &str) -> String {
    match measure {
        Measure::DistinctCategories => format!("cat:{value}"),
        _ => format!("obj:{value}"),
    }
}

/// The mark of a purchase's contribution to a goal.
fn order_mark(measure: Measure, order_id: &str) -> Option<String> {
    match measure {
        Measure::SumAmount => Some(format!("sum:order:{order_id}")),
        Measure::Count => Some(format!("count:order:{order_id}")),
        Measure::DistinctObjects | Measure::DistinctCategories | Measure::StreakDays => None,
    }
}

/// The distinct values this event shows a goal (what `step` would insert into `seen`).
fn candidate_values(measure: Measure, facts: &Facts) -> Vec<String> {
    match measure {
        Measure::DistinctObjects => facts.object_id.iter().cloned().collect(),
        Measure::DistinctCategories => facts
            .lines
            .iter()
            .filter_map(|l| l.category.clone())
            .collect(),
        Measure::Count | Measure::SumAmount | Measure::StreakDays => Vec::new(),
    }
}

async fn load_state(
    tx: &Tx<'_>,
    candidate: &Candidate,
    event: &GoalEvent,
) -> TxResult<(ChallengeState, Vec<Option<i64>>)> {
    let challenge = &candidate.challenge;
    let rows = challenge_progress::Entity::find()
        .filter(challenge_progress::Column::MemberId.eq(tx.member.id))
        .filter(challenge_progress::Column::ChallengeId.eq(challenge.id))
        .filter(challenge_progress::Column::WindowKey.eq(candidate.window.key.as_str()))
        .all(tx.txn)
        .await?;
    let mut state = ChallengeState::new(challenge);
    let mut ids = vec![None; challenge.goals.len()];
    for row in rows {
        let Some(index) = usize::try_from(row.goal).ok().filter(|i| *i < ids.len()) else {
            continue;
        };
        if let Some(slot) = ids.get_mut(index) {
            *slot = Some(row.id);
        }
        if let Some(goal) = state.goals.get_mut(index) {
            *goal = GoalState {
                value: row.value,
                seen: BTreeSet::new(),
                last_day: row
                    .last_day
                    .as_deref()
                    .and_then(|d| d.parse::<NaiveDate>().ok()),
                completed_at: row.completed_at,
            };
        }
    }
    // Distinct goals: which of the values this event shows already counted.
    for (index, goal) in challenge.goals.iter().enumerate() {
        let values = candidate_values(goal.measure, &event.facts);
        if values.is_empty() || goal.action != event.action {
            continue;
        }
        let marks: Vec<String> = values
            .iter()
            .map(|v| distinct_mark(goal.measure, v))
            .collect();
        let seen: Vec<String> = challenge_marks::Entity::find()
            .select_only()
            .column(challenge_marks::Column::Mark)
            .filter(challenge_marks::Column::MemberId.eq(tx.member.id))
            .filter(challenge_marks::Column::ChallengeId.eq(challenge.id))
            .filter(challenge_marks::Column::WindowKey.eq(candidate.window.key.as_str()))
            .filter(challenge_marks::Column::Goal.eq(goal_index(index)?))
            .filter(challenge_marks::Column::Mark.is_in(marks))
            .into_tuple()
            .all(tx.txn)
            .await?;
        if let Some(goal_state) = state.goals.get_mut(index) {
            goal_state.seen = seen
                .into_iter()
                .filter_map(|m| m.split_once(':').map(|(_, v)| v.to_owned()))
                .collect();
        }
    }
    Ok((state, ids))
}

fn goal_index(index: usize) -> TxResult<i32> {
    i32::try_from(index).map_err(|e| TxError::Domain(DomainError::internal(e)))
}

fn mark_row(
    tx: &Tx<'_>,
    candidate: &Candidate,
    goal: i32,
    mark: String,
    amount_minor: i64,
) -> challenge_marks::ActiveModel {
    challenge_marks::ActiveModel {
        program_id: Set(tx.program.id),
        member_id: Set(tx.member.id),
        challenge_id: Set(candidate.challenge.id),
        window_key: Set(candidate.window.key.clone()),
        goal: Set(goal),
        mark: Set(mark),
        amount_minor: Set(amount_minor),
        created_at: Set(tx.now),
        ..Default::default()
    }
}

/// Moves every candidate by the event and pays the challenges it completes.
pub(crate) async fn advance(
    tx: &mut Tx<'_>,
    candidates: &[Candidate],
    request: &ActionRequest,
    reference: Option<(&str, &str)>,
    facts: Facts,
) -> TxResult<Progress> {
    let mut progress = Progress::default();
    if candidates.is_empty() {
        return Ok(progress);
    }
    let event = GoalEvent {
        action: request.action.clone(),
        facts,
    };
    let order_id = reference
        .filter(|(kind, _)| *kind == "order")
        .map(|(_, id)| id.to_owned());
    // The progress rows and marks written below go with the posting's last statement on
    // PostgreSQL. Each candidate reads only its own challenge's rows, so within one event they
    // wait; an earlier event of this transaction (the join before the registration) may have
    // left some unsent, which the reads below must see.
    tx.flush("challenge_progress").await?;
    tx.flush("challenge_marks").await?;
    let backend = tx.txn.get_database_backend();
    for candidate in candidates {
        let challenge = &candidate.challenge;
        let (mut state, ids) = load_state(tx, candidate, &event).await?;
        let before = state.clone();
        let moved = apply_event(challenge, &mut state, &event);
        if moved.is_empty() {
            continue;
        }
        let mut marks = Vec::new();
        for &index in &moved {
            let (Some(goal), Some(old), Some(new)) = (
                challenge.goals.get(index),
                before.goals.get(index),
                state.goals.get(index),
            ) else {
                continue;
            };
            let position = goal_index(index)?;
            let last_day = new.last_day.map(|d| d.to_string());
            match ids.get(index).copied().flatten() {
                Some(id) => {
                    let update = challenge_progress::Entity::update_many()
                        .col_expr(challenge_progress::Column::Value, Expr::value(new.value))
                        .col_expr(challenge_progress::Column::LastDay, Expr::value(last_day))
                        .col_expr(
                            challenge_progress::Column::CompletedAt,
                            Expr::value(new.completed_at),
                        )
                        .col_expr(challenge_progress::Column::UpdatedAt, Expr::value(tx.now))
                        .filter(challenge_progress::Column::Id.eq(id))
                        .build(backend);
                    tx.write_later("challenge_progress", update).await?;
                }
                None => {
                    let insert =
                        challenge_progress::Entity::insert(challenge_progress::ActiveModel {
                            program_id: Set(tx.program.id),
                            member_id: Set(tx.member.id),
                            challenge_id: Set(challenge.id),
                            window_key: Set(candidate.window.key.clone()),
                            goal: Set(position),
                            value: Set(new.value),
                            last_day: Set(last_day),
                            completed_at: Set(new.completed_at),
                            updated_at: Set(tx.now),
                            ..Default::default()
                        })
                        .build(backend);
                    tx.write_later("challenge_progress", insert).await?;
                }
            }
            for value in new.seen.difference(&old.seen) {
                marks.push(mark_row(
                    tx,
                    candidate,
                    position,
                    distinct_mark(goal.measure, value),
                    0,
                ));
            }
            if let Some(mark) = order_id
                .as_deref()
                .and_then(|o| order_mark(goal.measure, o))
            {
                let added = new.value.saturating_sub(old.value);
                marks.push(mark_row(tx, candidate, position, mark, added));
            }
        }
        if !marks.is_empty() {
            let insert = challenge_marks::Entity::insert_many(marks)
                .on_conflict(
                    OnConflict::columns([
                        challenge_marks::Column::MemberId,
                        challenge_marks::Column::ChallengeId,
                        challenge_marks::Column::WindowKey,
                        challenge_marks::Column::Goal,
                        challenge_marks::Column::Mark,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .build(backend);
            tx.write_later("challenge_marks", insert).await?;
        }
        let completed = before.completed_at().is_none()
            && state.completed_at().is_some()
            && complete(tx, candidate, &mut progress.posted).await?;
        let note = crate::live::events::ChallengeEvent {
            program_id: tx.program.id,
            member_id: tx.member.id,
            challenge_id: challenge.id,
            window_key: candidate.window.key.clone(),
            goals: moved.clone(),
            completed,
        };
        tx.notes.push(Box::new(note));
        progress.moved.push(Moved {
            challenge_id: challenge.id,
            window_key: candidate.window.key.clone(),
            goals: moved,
            completed,
        });
    }
    Ok(progress)
}

/// Inserts the completion row and, only when this statement inserted it, pays the reward.
async fn complete(
    tx: &mut Tx<'_>,
    candidate: &Candidate,
    posted: &mut Vec<Posting>,
) -> TxResult<bool> {
    let challenge = &candidate.challenge;
    let window_key = candidate.window.key.as_str();
    let key = format!("challenge:{}:{}:{window_key}", challenge.id, tx.member.id);
    let inserted = challenge_completions::Entity::insert(challenge_completions::ActiveModel {
        program_id: Set(tx.program.id),
        member_id: Set(tx.member.id),
        challenge_id: Set(challenge.id),
        window_key: Set(window_key.to_owned()),
        idempotency_key: Set(Some(key.clone())),
        completed_at: Set(tx.now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            challenge_completions::Column::MemberId,
            challenge_completions::Column::ChallengeId,
            challenge_completions::Column::WindowKey,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx.txn)
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    let reward = challenge.reward;
    let source = source_of(challenge);
    let id = challenge.id.to_string();
    if reward.points.is_positive() {
        let entry = Entry::new(Account::Points, Kind::Earn, reward.points)
            .label(source.clone())
            .reference("challenge", id.clone())
            .key(Some(key.clone()));
        posted.push(tx.credit(entry).await?);
    }
    if reward.free_spins > 0 {
        let entry = Entry::new(Account::Spins, Kind::Earn, spins_amount(reward.free_spins))
            .label(source)
            .reference("challenge", id.clone())
            .key(Some(format!("{key}:spins")));
        posted.push(tx.credit(entry).await?);
    }
    if let Some(gift_id) = reward.gift_id {
        match grant_gift_as(tx, gift_id, RedemptionOrigin::Challenge).await {
            Ok(_) => {}
            // An exhausted or removed gift must not refuse the member's event: the rest of
            // the reward stands, and the log says what was not given.
            Err(TxError::Domain(DomainError::OutOfStock(why) | DomainError::NotFound(why))) => {
                tracing::warn!(
                    challenge = challenge.id,
                    member = tx.member.id,
                    "challenge gift not given: {why}"
                );
            }
            Err(err) => return Err(err),
        }
    }
    if let Some(badge_id) = reward.badge_id {
        insert_member_badge(
            tx.txn,
            tx.program.id,
            tx.member.id,
            badge_id,
            BadgeSource::Challenge,
            Some(id),
            tx.now,
        )
        .await?;
    }
    Ok(true)
}

/// A refund of `order_id` (the order's amount, refunded before and after this refund) takes
/// back what the purchase added to `SUM_AMOUNT` goals in proportion, and its count from
/// `COUNT` goals once refunded in full. Completions stand.
pub(crate) async fn take_back(
    tx: &Tx<'_>,
    order_id: &str,
    amount_minor: i64,
    (refunded_before, refunded_after): (i64, i64),
) -> TxResult<()> {
    if amount_minor <= 0 || refunded_after <= refunded_before {
        return Ok(());
    }
    let sum_mark = format!("sum:order:{order_id}");
    let count_mark = format!("count:order:{order_id}");
    let marks = challenge_marks::Entity::find()
        .filter(challenge_marks::Column::MemberId.eq(tx.member.id))
        .filter(challenge_marks::Column::Mark.is_in([sum_mark.clone(), count_mark]))
        .all(tx.txn)
        .await?;
    let kept = |added: i64, refunded: i64| -> i64 {
        let left = i128::from(amount_minor.saturating_sub(refunded).max(0));
        i64::try_from(i128::from(added) * left / i128::from(amount_minor)).unwrap_or(0)
    };
    for mark in marks {
        let due = if mark.mark == sum_mark {
            kept(mark.amount_minor, refunded_before) - kept(mark.amount_minor, refunded_after)
        } else if refunded_before < amount_minor && refunded_after >= amount_minor {
            mark.amount_minor
        } else {
            0
        };
        if due <= 0 {
            continue;
        }
        challenge_progress::Entity::update_many()
            .col_expr(
                challenge_progress::Column::Value,
                Expr::col(challenge_progress::Column::Value).sub(due),
            )
            .col_expr(challenge_progress::Column::UpdatedAt, Expr::value(tx.now))
            .filter(challenge_progress::Column::MemberId.eq(tx.member.id))
            .filter(challenge_progress::Column::ChallengeId.eq(mark.challenge_id))
            .filter(challenge_progress::Column::WindowKey.eq(mark.window_key.as_str()))
            .filter(challenge_progress::Column::Goal.eq(mark.goal))
            .exec(tx.txn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::model::{ChallengeReward, Window};

    fn named(name: &str) -> Challenge {
        Challenge {
            id: 7,
            name: name.into(),
            description: String::new(),
            mission: false,
            window: Window::Weekly,
            goals: Vec::new(),
            reward: ChallengeReward::default(),
            enabled: true,
        }
    }

    #[test]
    fn the_report_source_is_the_challenge_name_as_a_key() {
        assert_eq!(
            source_of(&named("News explorer")),
            "challenge_news_explorer"
        );
        assert_eq!(
            source_of(&named("  7-day streak!! ")),
            "challenge_7_day_streak"
        );
        assert_eq!(source_of(&named("Ωμέγα")), "challenge_7");
        assert!(source_of(&named(&"x".repeat(300))).len() <= 64);
    }
}
