//! What a member sees of challenges: each live challenge in its current window with per-goal
//! progress, and the badges they hold and those still locked.

use chrono::{DateTime, Utc};
use loyalty_entities::{challenge_completions, challenge_progress};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::advance::live_set;
use super::badges::Badge;
use super::model::{Challenge, Measure, Window};
use super::window::{window_at, WindowSpan};
use crate::error::DomainResult;
use crate::program::Program;
use crate::service::Loyalty;

/// One goal of a member's challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalProgress {
    pub position: usize,
    pub action: String,
    pub measure: Measure,
    /// Minor units for `SUM_AMOUNT`, a count otherwise (as `target`).
    pub value: i64,
    pub target: i64,
    /// What is still missing (0 once reached).
    pub left: i64,
    pub completed_at: Option<DateTime<Utc>>,
    /// A mission step counts only once the one before is complete (always true otherwise).
    pub unlocked: bool,
}

/// A live challenge in the member's current window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChallenge {
    pub challenge: Challenge,
    pub window: WindowSpan,
    pub goals: Vec<GoalProgress>,
    /// When the member completed it in this window (the reward was paid then).
    pub completed_at: Option<DateTime<Utc>>,
}

impl Loyalty {
    /// The member's live challenges, in id order: every enabled one whose window is open now,
    /// and a fixed-window one that has ended only if the member completed it.
    pub async fn member_challenges(
        &self,
        program: &Program,
        member_id: i64,
    ) -> DomainResult<Vec<MemberChallenge>> {
        let set = live_set(self, self.db(), program.id).await?;
        let now = self.now();
        let windows: Vec<(&Challenge, WindowSpan)> = set
            .challenges
            .iter()
            .filter(|c| c.enabled)
            .filter_map(
                |c| match (window_at(&c.window, program.tz, now), c.window) {
                    (Some(window), _) => Some((c, window)),
                    (None, Window::Fixed { from, to }) if now >= to => Some((
                        c,
                        WindowSpan {
                            key: "fixed".to_owned(),
                            starts_at: from,
                            ends_at: to,
                        },
                    )),
                    (None, _) => None,
                },
            )
            .collect();
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = windows.iter().map(|(c, _)| c.id).collect();
        let keys: Vec<String> = windows.iter().map(|(_, w)| w.key.clone()).collect();
        let progress = challenge_progress::Entity::find()
            .filter(challenge_progress::Column::MemberId.eq(member_id))
            .filter(challenge_progress::Column::ChallengeId.is_in(ids.clone()))
            .filter(challenge_progress::Column::WindowKey.is_in(keys.clone()))
            .order_by_asc(challenge_progress::Column::Goal)
            .all(self.db())
            .await?;
        let completions = challenge_completions::Entity::find()
            .filter(challenge_completions::Column::MemberId.eq(member_id))
            .filter(challenge_completions::Column::ChallengeId.is_in(ids))
            .filter(challenge_completions::Column::WindowKey.is_in(keys))
            .all(self.db())
            .await?;
        let mut out = Vec::new();
        for (challenge, window) in windows {
            let completed_at = completions
                .iter()
                .find(|c| c.challenge_id == challenge.id && c.window_key == window.key)
                .map(|c| c.completed_at);
            if now >= window.ends_at && completed_at.is_none() {
                continue;
            }
            let mut open = true;
            let goals = challenge
                .goals
                .iter()
                .enumerate()
                .map(|(position, goal)| {
                    let row = progress.iter().find(|p| {
                        p.challenge_id == challenge.id
                            && p.window_key == window.key
                            && usize::try_from(p.goal).ok() == Some(position)
                    });
                    let value = row.map(|r| r.value).unwrap_or(0);
                    let completed_at = row.and_then(|r| r.completed_at);
                    let unlocked = !challenge.mission || open;
                    if challenge.mission && completed_at.is_none() {
                        open = false;
                    }
                    GoalProgress {
                        position,
                        action: goal.action.clone(),
                        measure: goal.measure,
                        value,
                        target: goal.target,
                        left: if completed_at.is_some() {
                            0
                        } else {
                            (goal.target - value).max(0)
                        },
                        completed_at,
                        unlocked,
                    }
                })
                .collect();
            out.push(MemberChallenge {
                challenge: challenge.clone(),
                window,
                goals,
                completed_at,
            });
        }
        Ok(out)
    }

    /// The program's badges the member does not hold yet, in id order.
    pub async fn locked_badges(
        &self,
        program: &Program,
        member_id: i64,
    ) -> DomainResult<Vec<Badge>> {
        let held: Vec<i64> = self
            .member_badges(program, member_id)
            .await?
            .into_iter()
            .map(|b| b.badge.id)
            .collect();
        Ok(self
            .badges(program)
            .await?
            .into_iter()
            .filter(|b| !held.contains(&b.id))
            .collect())
    }
}
