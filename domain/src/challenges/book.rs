//! The challenges draft admins edit and its published versions, the same cycle as rules
//! (`earning/rulebook.rs`): draft rows keep stable ids and are soft-deleted; publishing
//! freezes the whole draft as JSON into the next `challenge_sets` version.

use loyalty_entities::{badges, challenge_goals, challenge_sets, challenges, gifts, programs};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::model::{
    Challenge, ChallengeInput, ChallengeReward, ChallengeSet, Checked, Goal, Measure, Window,
    WindowKind, MAX_CHALLENGES,
};
use crate::earning::rules::conditions::Condition;
use crate::earning::rules::BUILTIN_ACTIONS;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::run_detached;
use crate::money::Points;
use crate::program::Program;
use crate::service::Loyalty;
use crate::stored::Stored;

fn to_goal(m: challenge_goals::Model) -> DomainResult<Goal> {
    let conditions: Vec<Condition> = serde_json::from_str(&m.conditions).map_err(|e| {
        DomainError::internal(format!("challenge_goals.conditions of goal {}: {e}", m.id))
    })?;
    Ok(Goal {
        action: m.action,
        conditions,
        measure: Measure::read("challenge_goals.measure", &m.measure)?,
        target: m.target,
    })
}

fn to_challenge(m: challenges::Model, goals: Vec<Goal>) -> DomainResult<Challenge> {
    let window = match WindowKind::read("challenges.window_kind", &m.window_kind)? {
        WindowKind::Weekly => Window::Weekly,
        WindowKind::Monthly => Window::Monthly,
        WindowKind::Fixed => match (m.window_from, m.window_to) {
            (Some(from), Some(to)) => Window::Fixed { from, to },
            _ => {
                return Err(DomainError::internal(format!(
                    "challenge {}: a FIXED window without from/to",
                    m.id
                )))
            }
        },
    };
    Ok(Challenge {
        id: m.id,
        name: m.name,
        description: m.description,
        mission: m.mission,
        window,
        goals,
        reward: ChallengeReward {
            points: Points::from_minor(m.reward_points_minor),
            free_spins: u32::try_from(m.reward_free_spins).unwrap_or_default(),
            gift_id: m.reward_gift_id,
            badge_id: m.reward_badge_id,
        },
        enabled: m.enabled,
    })
}

/// The draft's challenges in id order, each with its goals in position order.
async fn load_draft<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    only: Option<i64>,
) -> DomainResult<Vec<Challenge>> {
    let mut query = challenges::Entity::find()
        .filter(challenges::Column::ProgramId.eq(program_id))
        .filter(challenges::Column::DeletedAt.is_null());
    if let Some(id) = only {
        query = query.filter(challenges::Column::Id.eq(id));
    }
    let rows = query.order_by_asc(challenges::Column::Id).all(conn).await?;
    let goals = challenge_goals::Entity::find()
        .filter(challenge_goals::Column::ChallengeId.is_in(rows.iter().map(|r| r.id)))
        .order_by_asc(challenge_goals::Column::ChallengeId)
        .order_by_asc(challenge_goals::Column::Position)
        .all(conn)
        .await?;
    let mut by_challenge: std::collections::HashMap<i64, Vec<Goal>> = Default::default();
    for goal in goals {
        by_challenge
            .entry(goal.challenge_id)
            .or_default()
            .push(to_goal(goal)?);
    }
    rows.into_iter()
        .map(|row| {
            let goals = by_challenge.remove(&row.id).unwrap_or_default();
            to_challenge(row, goals)
        })
        .collect()
}

fn fill(model: &mut challenges::ActiveModel, input: &ChallengeInput, checked: &Checked) {
    let (from, to) = match checked.window {
        Window::Fixed { from, to } => (Some(from), Some(to)),
        Window::Weekly | Window::Monthly => (None, None),
    };
    model.name = Set(input.name.trim().to_owned());
    model.description = Set(input.description.trim().to_owned());
    model.mission = Set(input.mission);
    model.window_kind = Set(checked.window.kind().as_str().to_owned());
    model.window_from = Set(from);
    model.window_to = Set(to);
    model.reward_points_minor = Set(checked.reward.points.minor());
    model.reward_free_spins = Set(i32::try_from(checked.reward.free_spins).unwrap_or(i32::MAX));
    model.reward_gift_id = Set(checked.reward.gift_id);
    model.reward_badge_id = Set(checked.reward.badge_id);
    model.enabled = Set(input.enabled);
}

/// Replaces a challenge's goals with `goals`, positions 0, 1, ….
async fn write_goals<C: ConnectionTrait>(
    conn: &C,
    challenge_id: i64,
    goals: &[Goal],
) -> DomainResult<()> {
    challenge_goals::Entity::delete_many()
        .filter(challenge_goals::Column::ChallengeId.eq(challenge_id))
        .exec(conn)
        .await?;
    let mut rows = Vec::with_capacity(goals.len());
    for (position, goal) in goals.iter().enumerate() {
        rows.push(challenge_goals::ActiveModel {
            challenge_id: Set(challenge_id),
            position: Set(i32::try_from(position).map_err(DomainError::internal)?),
            action: Set(goal.action.clone()),
            conditions: Set(serde_json::to_string(&goal.conditions).map_err(DomainError::internal)?),
            measure: Set(goal.measure.as_str().to_owned()),
            target: Set(goal.target),
            ..Default::default()
        });
    }
    challenge_goals::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

impl Loyalty {
    /// The challenges draft (what `publish_challenges` would freeze).
    pub async fn draft_challenges(&self, program: &Program) -> DomainResult<Vec<Challenge>> {
        load_draft(self.db(), program.id, None).await
    }

    /// The actions a goal may be triggered by: the built-in ones and those the program's draft
    /// rules name.
    async fn known_actions(&self, program: &Program) -> DomainResult<Vec<String>> {
        let mut actions: Vec<String> = BUILTIN_ACTIONS
            .iter()
            .map(|(action, _)| (*action).to_owned())
            .chain(
                self.draft_rules(program)
                    .await?
                    .into_iter()
                    .map(|rule| rule.action),
            )
            .collect();
        actions.sort_unstable();
        actions.dedup();
        Ok(actions)
    }

    /// Validates an edit, that the tiers its conditions name and the gift and badge it pays
    /// are the program's.
    async fn checked_challenge(
        &self,
        program: &Program,
        input: &ChallengeInput,
    ) -> DomainResult<Checked> {
        let checked = input.validate(&self.known_actions(program).await?)?;
        for (index, goal) in checked.goals.iter().enumerate() {
            self.check_tier_ids(program, &goal.conditions, &format!("goals[{index}]."))
                .await?;
            self.check_badge_codes(program, &goal.conditions, &format!("goals[{index}]."))
                .await?;
        }
        if let Some(gift_id) = checked.reward.gift_id {
            let found = gifts::Entity::find_by_id(gift_id)
                .filter(gifts::Column::ProgramId.eq(program.id))
                .count(self.db())
                .await?;
            if found == 0 {
                return Err(DomainError::validation(format!(
                    "reward.giftId: no gift {gift_id} in this program"
                )));
            }
        }
        if let Some(badge_id) = checked.reward.badge_id {
            let found = badges::Entity::find_by_id(badge_id)
                .filter(badges::Column::ProgramId.eq(program.id))
                .count(self.db())
                .await?;
            if found == 0 {
                return Err(DomainError::validation(format!(
                    "reward.badgeId: no badge {badge_id} in this program"
                )));
            }
        }
        Ok(checked)
    }

    pub async fn create_challenge(
        &self,
        program: &Program,
        input: ChallengeInput,
    ) -> DomainResult<Challenge> {
        let checked = self.checked_challenge(program, &input).await?;
        let (loyalty, program_id) = (self.clone(), program.id);
        run_detached(async move {
            let txn = loyalty.db().begin().await?;
            let existing = challenges::Entity::find()
                .filter(challenges::Column::ProgramId.eq(program_id))
                .filter(challenges::Column::DeletedAt.is_null())
                .count(&txn)
                .await?;
            if existing >= MAX_CHALLENGES {
                return Err(DomainError::LimitReached(format!(
                    "a program has at most {MAX_CHALLENGES} challenges"
                )));
            }
            let now = loyalty.now();
            let mut model = challenges::ActiveModel {
                program_id: Set(program_id),
                created_at: Set(now),
                updated_at: Set(now),
                deleted_at: Set(None),
                ..Default::default()
            };
            fill(&mut model, &input, &checked);
            let row = challenges::Entity::insert(model)
                .exec_with_returning(&txn)
                .await?;
            write_goals(&txn, row.id, &checked.goals).await?;
            txn.commit().await?;
            to_challenge(row, checked.goals)
        })
        .await
    }

    pub async fn update_challenge(
        &self,
        program: &Program,
        id: i64,
        input: ChallengeInput,
    ) -> DomainResult<Challenge> {
        let checked = self.checked_challenge(program, &input).await?;
        let (loyalty, program_id) = (self.clone(), program.id);
        run_detached(async move {
            let txn = loyalty.db().begin().await?;
            let row = draft_row(&txn, program_id, id).await?;
            let mut model: challenges::ActiveModel = row.into();
            fill(&mut model, &input, &checked);
            model.updated_at = Set(loyalty.now());
            let row = challenges::Entity::update(model).exec(&txn).await?;
            write_goals(&txn, row.id, &checked.goals).await?;
            txn.commit().await?;
            to_challenge(row, checked.goals)
        })
        .await
    }

    /// Removes a challenge from the draft; published versions keep their copy.
    pub async fn delete_challenge(&self, program: &Program, id: i64) -> DomainResult<Challenge> {
        let challenge = load_draft(self.db(), program.id, Some(id))
            .await?
            .pop()
            .ok_or_else(|| DomainError::not_found(format!("challenge {id} not found")))?;
        let updated = challenges::Entity::update_many()
            .col_expr(challenges::Column::DeletedAt, Expr::value(self.now()))
            .filter(challenges::Column::Id.eq(id))
            .filter(challenges::Column::ProgramId.eq(program.id))
            .filter(challenges::Column::DeletedAt.is_null())
            .exec(self.db())
            .await?;
        if updated.rows_affected == 0 {
            return Err(DomainError::not_found(format!("challenge {id} not found")));
        }
        Ok(challenge)
    }

    /// Freezes the draft into the next version. Concurrent publishes of one program queue on
    /// the program row's lock (PostgreSQL) or the write lock (SQLite).
    pub async fn publish_challenges(
        &self,
        program: &Program,
        published_by: &str,
    ) -> DomainResult<ChallengeSet> {
        let (loyalty, program_id, published_by) =
            (self.clone(), program.id, published_by.to_owned());
        run_detached(async move {
            let txn = loyalty.db().begin().await?;
            programs::Entity::update_many()
                .col_expr(
                    programs::Column::RulesetVersion,
                    Expr::col(programs::Column::RulesetVersion).into(),
                )
                .filter(programs::Column::Id.eq(program_id))
                .exec(&txn)
                .await?;
            let challenges = load_draft(&txn, program_id, None).await?;
            let version = live_version(&txn, program_id).await? + 1;
            challenge_sets::Entity::insert(challenge_sets::ActiveModel {
                program_id: Set(program_id),
                version: Set(version),
                challenges: Set(serde_json::to_string(&challenges).map_err(DomainError::internal)?),
                published_by: Set(published_by),
                published_at: Set(loyalty.now()),
                ..Default::default()
            })
            .exec_without_returning(&txn)
            .await?;
            txn.commit().await?;
            Ok(ChallengeSet {
                version,
                challenges,
            })
        })
        .await
    }

    /// The published version members' progress will follow (version 0: none yet).
    pub async fn live_challenges(&self, program: &Program) -> DomainResult<ChallengeSet> {
        let Some(row) = challenge_sets::Entity::find()
            .filter(challenge_sets::Column::ProgramId.eq(program.id))
            .order_by_desc(challenge_sets::Column::Version)
            .one(self.db())
            .await?
        else {
            return Ok(ChallengeSet::default());
        };
        let challenges: Vec<Challenge> = serde_json::from_str(&row.challenges).map_err(|e| {
            DomainError::internal(format!(
                "challenge_sets.challenges of version {}: {e}",
                row.version
            ))
        })?;
        Ok(ChallengeSet {
            version: row.version,
            challenges,
        })
    }
}

async fn draft_row<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    id: i64,
) -> DomainResult<challenges::Model> {
    challenges::Entity::find_by_id(id)
        .filter(challenges::Column::ProgramId.eq(program_id))
        .filter(challenges::Column::DeletedAt.is_null())
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("challenge {id} not found")))
}

/// The number of the program's live (highest published) challenge set; 0 when none is.
pub(crate) async fn live_version<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
) -> DomainResult<i64> {
    // The number only: a published set's body is the whole draft as JSON.
    let version: Option<i64> = challenge_sets::Entity::find()
        .select_only()
        .column(challenge_sets::Column::Version)
        .filter(challenge_sets::Column::ProgramId.eq(program_id))
        .order_by_desc(challenge_sets::Column::Version)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(version.unwrap_or(0))
}
