//! The admin's report per challenge, over every window so far: members who started (any goal
//! counted an event), members who completed and completions (one per member and window), the
//! funnel per goal (a mission's steps), and the points its rewards issued.

use loyalty_entities::{challenge_completions, challenge_progress, ledger_entries};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect};

use super::advance::live_set;
use crate::error::{DomainError, DomainResult};
use crate::money::Points;
use crate::program::Program;
use crate::service::Loyalty;

/// One goal (mission step) of the funnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFunnel {
    pub position: usize,
    pub action: String,
    /// Members with progress on this goal in some window.
    pub members_started: i64,
    /// Members who completed it in some window.
    pub members_completed: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeReport {
    pub challenge_id: i64,
    pub name: String,
    pub members_started: i64,
    pub members_completed: i64,
    /// Completions (a repeating challenge may be completed once per window).
    pub completions: i64,
    /// Points its completions credited (net of nothing: rewards are never reversed).
    pub points_issued: Points,
    pub steps: Vec<StepFunnel>,
}

#[derive(FromQueryResult)]
struct StepRow {
    goal: i32,
    started: i64,
    completed: i64,
}

#[derive(FromQueryResult)]
struct CountRow {
    n: i64,
}

#[derive(FromQueryResult)]
struct CompletionRow {
    members: i64,
    completions: i64,
}

impl Loyalty {
    /// `NOT_FOUND` when the live version has no such challenge.
    pub async fn challenge_report(
        &self,
        program: &Program,
        challenge_id: i64,
    ) -> DomainResult<ChallengeReport> {
        let set = live_set(self, self.db(), program.id).await?;
        let challenge = set
            .challenges
            .iter()
            .find(|c| c.id == challenge_id)
            .ok_or_else(|| {
                DomainError::not_found(format!("challenge {challenge_id} is not published"))
            })?;
        let db = self.db();
        let steps = challenge_progress::Entity::find()
            .select_only()
            .column(challenge_progress::Column::Goal)
            .column_as(Expr::cust("COUNT(DISTINCT member_id)"), "started")
            .column_as(
                Expr::cust("COUNT(DISTINCT CASE WHEN completed_at IS NOT NULL THEN member_id END)"),
                "completed",
            )
            .filter(challenge_progress::Column::ProgramId.eq(program.id))
            .filter(challenge_progress::Column::ChallengeId.eq(challenge_id))
            .group_by(challenge_progress::Column::Goal)
            .into_model::<StepRow>()
            .all(db)
            .await?;
        let started = challenge_progress::Entity::find()
            .select_only()
            .column_as(Expr::cust("COUNT(DISTINCT member_id)"), "n")
            .filter(challenge_progress::Column::ProgramId.eq(program.id))
            .filter(challenge_progress::Column::ChallengeId.eq(challenge_id))
            .into_model::<CountRow>()
            .one(db)
            .await?
            .map(|r| r.n)
            .unwrap_or(0);
        let completed = challenge_completions::Entity::find()
            .select_only()
            .column_as(Expr::cust("COUNT(DISTINCT member_id)"), "members")
            .column_as(Expr::cust("COUNT(*)"), "completions")
            .filter(challenge_completions::Column::ProgramId.eq(program.id))
            .filter(challenge_completions::Column::ChallengeId.eq(challenge_id))
            .into_model::<CompletionRow>()
            .one(db)
            .await?;
        let issued = ledger_entries::Entity::find()
            .select_only()
            .column_as(
                Expr::cust("CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT)"),
                "n",
            )
            .filter(ledger_entries::Column::ProgramId.eq(program.id))
            .filter(ledger_entries::Column::Account.eq("POINTS"))
            .filter(ledger_entries::Column::RefType.eq("challenge"))
            .filter(ledger_entries::Column::RefId.eq(challenge_id.to_string()))
            .into_model::<CountRow>()
            .one(db)
            .await?
            .map(|r| r.n)
            .unwrap_or(0);
        Ok(ChallengeReport {
            challenge_id,
            name: challenge.name.clone(),
            members_started: started,
            members_completed: completed.as_ref().map(|c| c.members).unwrap_or(0),
            completions: completed.map(|c| c.completions).unwrap_or(0),
            points_issued: Points::from_minor(issued),
            steps: challenge
                .goals
                .iter()
                .enumerate()
                .map(|(position, goal)| {
                    let row = steps
                        .iter()
                        .find(|r| usize::try_from(r.goal).ok() == Some(position));
                    StepFunnel {
                        position,
                        action: goal.action.clone(),
                        members_started: row.map(|r| r.started).unwrap_or(0),
                        members_completed: row.map(|r| r.completed).unwrap_or(0),
                    }
                })
                .collect(),
        })
    }
}
