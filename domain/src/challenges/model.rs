//! What a challenge is, and the checks an admin's edit passes before it is stored.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::earning::rules::conditions::{self, quoted, Condition};
use crate::error::{DomainError, DomainResult};
use crate::money::{Money, Points};
use crate::stored::stored_enum;

/// Most challenges a program's draft may hold.
pub const MAX_CHALLENGES: u64 = 100;
/// Most goals (or mission steps) one challenge may have.
pub const MAX_GOALS: usize = 10;
/// Most a counted goal's target may be (events, distinct values, days).
pub const MAX_COUNT_TARGET: i64 = 100_000;
/// Most free spins a challenge may pay.
pub const MAX_REWARD_SPINS: u32 = 100;

/// What a goal measures over the events that meet its conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Measure {
    /// How many events.
    Count,
    /// The sum of their amounts (the order total, or the value of the lines the goal's line
    /// condition matches), in minor units.
    SumAmount,
    /// How many distinct object ids.
    DistinctObjects,
    /// How many distinct line categories.
    DistinctCategories,
    /// The run of consecutive local days (program timezone) with at least one event.
    StreakDays,
}

stored_enum!(Measure {
    Count => "COUNT",
    SumAmount => "SUM_AMOUNT",
    DistinctObjects => "DISTINCT_OBJECTS",
    DistinctCategories => "DISTINCT_CATEGORIES",
    StreakDays => "STREAK_DAYS",
});

/// What `challenges.window_kind` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Fixed,
    Weekly,
    Monthly,
}

stored_enum!(WindowKind {
    Fixed => "FIXED",
    Weekly => "WEEKLY",
    Monthly => "MONTHLY",
});

/// When progress counts. Repeating windows start again every local Monday 00:00 or local 1st
/// 00:00 in the program's timezone, with progress from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Window {
    /// `[from, to)`.
    Fixed {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Weekly,
    Monthly,
}

impl Window {
    pub fn kind(&self) -> WindowKind {
        match self {
            Window::Fixed { .. } => WindowKind::Fixed,
            Window::Weekly => WindowKind::Weekly,
            Window::Monthly => WindowKind::Monthly,
        }
    }
}

/// One goal (a mission's step when the challenge is a mission).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// The trigger: events of this action count.
    pub action: String,
    /// The campaign conditions an event must meet, as rules check them.
    pub conditions: Vec<Condition>,
    pub measure: Measure,
    /// Minor units for `SUM_AMOUNT`, a count otherwise; always > 0.
    pub target: i64,
}

/// Paid once per member and window when every goal is complete. Any combination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeReward {
    pub points: Points,
    pub free_spins: u32,
    pub gift_id: Option<i64>,
    pub badge_id: Option<i64>,
}

/// A challenge as the draft holds it and a published version freezes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The draft row's id, stable across edits and versions.
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The goals are ordered steps: a step counts events only once the one before is complete.
    pub mission: bool,
    pub window: Window,
    pub goals: Vec<Goal>,
    pub reward: ChallengeReward,
    pub enabled: bool,
}

/// A published version of a program's challenges (version 0: nothing published yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeSet {
    pub version: i64,
    pub challenges: Vec<Challenge>,
}

/// One goal of an admin's edit.
#[derive(Clone, Debug)]
pub struct GoalInput {
    pub action: String,
    /// The admin API's JSON conditions, as rules take them.
    pub conditions: Vec<serde_json::Value>,
    pub measure: Measure,
    /// A money amount for `SUM_AMOUNT` ("200.00"), a whole number otherwise.
    pub target: Decimal,
}

/// An admin's challenge edit.
#[derive(Clone, Debug)]
pub struct ChallengeInput {
    pub name: String,
    pub description: String,
    pub mission: bool,
    pub window_kind: WindowKind,
    /// FIXED only.
    pub window_from: Option<DateTime<Utc>>,
    /// FIXED only.
    pub window_to: Option<DateTime<Utc>>,
    pub goals: Vec<GoalInput>,
    pub reward_points: Option<Decimal>,
    pub reward_free_spins: Option<u32>,
    pub reward_gift_id: Option<i64>,
    pub reward_badge_id: Option<i64>,
    pub enabled: bool,
}

/// An action key as rules and `recordAction` spell it.
pub(crate) fn is_action_key(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The parts of a checked edit; the gift and badge ids still need the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub window: Window,
    pub goals: Vec<Goal>,
    pub reward: ChallengeReward,
}

impl ChallengeInput {
    /// Checks every field; `known_actions` are the actions a goal may be triggered by (the
    /// built-in ones and those the program's rules name). Refusals name the field.
    pub fn validate(&self, known_actions: &[String]) -> DomainResult<Checked> {
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(DomainError::validation("name must be 1–200 characters"));
        }
        if self.description.chars().count() > 1000 {
            return Err(DomainError::validation(
                "description must be at most 1000 characters",
            ));
        }
        let window = self.window()?;
        if self.goals.is_empty() {
            return Err(DomainError::validation(
                "goals: at least one goal is required",
            ));
        }
        if self.goals.len() > MAX_GOALS {
            return Err(DomainError::validation(format!(
                "goals: at most {MAX_GOALS} goals"
            )));
        }
        let goals = self
            .goals
            .iter()
            .enumerate()
            .map(|(index, goal)| goal.validate(&format!("goals[{index}]"), known_actions))
            .collect::<DomainResult<Vec<_>>>()?;
        let reward = self.reward()?;
        Ok(Checked {
            window,
            goals,
            reward,
        })
    }

    fn window(&self) -> DomainResult<Window> {
        match (self.window_kind, self.window_from, self.window_to) {
            (WindowKind::Fixed, Some(from), Some(to)) if to <= from => Err(
                DomainError::validation("window.to must be after window.from"),
            ),
            (WindowKind::Fixed, Some(from), Some(to)) => Ok(Window::Fixed { from, to }),
            (WindowKind::Fixed, None, _) => Err(DomainError::validation(
                "window.from is required for a FIXED window",
            )),
            (WindowKind::Fixed, _, None) => Err(DomainError::validation(
                "window.to is required for a FIXED window",
            )),
            (WindowKind::Weekly | WindowKind::Monthly, None, None) => Ok(match self.window_kind {
                WindowKind::Monthly => Window::Monthly,
                _ => Window::Weekly,
            }),
            (WindowKind::Weekly | WindowKind::Monthly, _, _) => Err(DomainError::validation(
                "window.from/window.to: only a FIXED window has them",
            )),
        }
    }

    fn reward(&self) -> DomainResult<ChallengeReward> {
        let points = match self.reward_points {
            Some(points) => {
                let points = Points::parse(points, "reward.points")?;
                if !points.is_positive() {
                    return Err(DomainError::validation("reward.points must be positive"));
                }
                points
            }
            None => Points::ZERO,
        };
        let free_spins = self.reward_free_spins.unwrap_or(0);
        if self.reward_free_spins.is_some() && !(1..=MAX_REWARD_SPINS).contains(&free_spins) {
            return Err(DomainError::validation(format!(
                "reward.freeSpins must be between 1 and {MAX_REWARD_SPINS}"
            )));
        }
        let reward = ChallengeReward {
            points,
            free_spins,
            gift_id: self.reward_gift_id,
            badge_id: self.reward_badge_id,
        };
        if reward == ChallengeReward::default() {
            return Err(DomainError::validation(
                "reward: at least one of points, freeSpins, giftId and badgeId",
            ));
        }
        Ok(reward)
    }
}

impl GoalInput {
    fn validate(&self, path: &str, known_actions: &[String]) -> DomainResult<Goal> {
        if !is_action_key(&self.action) {
            return Err(DomainError::validation(format!(
                "{path}.action must be 1–64 characters of a–z, 0–9 and `_`"
            )));
        }
        if !known_actions.contains(&self.action) {
            return Err(DomainError::validation(format!(
                "{path}.action: unknown action {} (known: {})",
                quoted(&self.action),
                known_actions.join(", ")
            )));
        }
        let conditions = conditions::validate(&self.conditions).map_err(|e| match e {
            DomainError::Validation(message) => {
                DomainError::Validation(format!("{path}.{message}"))
            }
            other => other,
        })?;
        let field = format!("{path}.target");
        let target = match self.measure {
            Measure::SumAmount => Money::parse(self.target, &field)?.minor(),
            _ => {
                if !self.target.fract().is_zero() {
                    return Err(DomainError::validation(format!(
                        "{field} must be a whole number for {}",
                        self.measure.as_str()
                    )));
                }
                i64::try_from(self.target).unwrap_or(i64::MAX)
            }
        };
        if target <= 0 {
            return Err(DomainError::validation(format!(
                "{field} must be greater than 0"
            )));
        }
        if self.measure != Measure::SumAmount && target > MAX_COUNT_TARGET {
            return Err(DomainError::validation(format!(
                "{field} must be at most {MAX_COUNT_TARGET}"
            )));
        }
        Ok(Goal {
            action: self.action.clone(),
            conditions,
            measure: self.measure,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn known() -> Vec<String> {
        vec!["news_read".into(), "purchase".into()]
    }

    fn goal(measure: Measure, target: Decimal) -> GoalInput {
        GoalInput {
            action: "news_read".into(),
            conditions: Vec::new(),
            measure,
            target,
        }
    }

    fn input() -> ChallengeInput {
        ChallengeInput {
            name: "News explorer".into(),
            description: String::new(),
            mission: false,
            window_kind: WindowKind::Weekly,
            window_from: None,
            window_to: None,
            goals: vec![goal(Measure::Count, dec!(3))],
            reward_points: Some(dec!(50)),
            reward_free_spins: None,
            reward_gift_id: None,
            reward_badge_id: None,
            enabled: true,
        }
    }

    fn refusal(input: ChallengeInput) -> String {
        match input.validate(&known()) {
            Err(DomainError::Validation(message)) => message,
            other => panic!("expected VALIDATION, got {other:?}"),
        }
    }

    #[test]
    fn a_weekly_count_challenge_is_accepted() {
        let checked = input().validate(&known()).unwrap();
        assert_eq!(checked.window, Window::Weekly);
        assert_eq!(checked.goals[0].target, 3);
        assert_eq!(checked.reward.points, Points::from_minor(5000));
    }

    #[test]
    fn a_sum_target_is_money_in_minor_units() {
        let mut i = input();
        i.goals = vec![GoalInput {
            action: "purchase".into(),
            ..goal(Measure::SumAmount, dec!(200.00))
        }];
        assert_eq!(i.validate(&known()).unwrap().goals[0].target, 20_000);
    }

    #[test]
    fn bad_challenges_are_refused_naming_the_field() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let cases: Vec<(ChallengeInput, &str)> = vec![
            (
                ChallengeInput {
                    goals: Vec::new(),
                    ..input()
                },
                "goals: at least one goal",
            ),
            (
                ChallengeInput {
                    goals: vec![goal(Measure::Count, dec!(0))],
                    ..input()
                },
                "goals[0].target must be greater than 0",
            ),
            (
                ChallengeInput {
                    goals: vec![
                        goal(Measure::Count, dec!(1)),
                        goal(Measure::SumAmount, dec!(-5)),
                    ],
                    ..input()
                },
                "goals[1].target must be greater than 0",
            ),
            (
                ChallengeInput {
                    goals: vec![goal(Measure::StreakDays, dec!(1.5))],
                    ..input()
                },
                "goals[0].target must be a whole number",
            ),
            (
                ChallengeInput {
                    window_kind: WindowKind::Fixed,
                    window_from: Some(t("2026-12-10T00:00:00Z")),
                    window_to: Some(t("2026-12-01T00:00:00Z")),
                    ..input()
                },
                "window.to must be after window.from",
            ),
            (
                ChallengeInput {
                    window_kind: WindowKind::Fixed,
                    ..input()
                },
                "window.from is required",
            ),
            (
                ChallengeInput {
                    window_from: Some(t("2026-12-10T00:00:00Z")),
                    ..input()
                },
                "window.from/window.to",
            ),
            (
                ChallengeInput {
                    goals: vec![GoalInput {
                        action: "moon_walk".into(),
                        ..goal(Measure::Count, dec!(1))
                    }],
                    ..input()
                },
                "goals[0].action: unknown action \"moon_walk\"",
            ),
            (
                ChallengeInput {
                    goals: vec![GoalInput {
                        action: "News".into(),
                        ..goal(Measure::Count, dec!(1))
                    }],
                    ..input()
                },
                "goals[0].action must be",
            ),
            (
                ChallengeInput {
                    goals: vec![GoalInput {
                        conditions: vec![json!({"kind": "orderTotalAtLeast", "amount": "0"})],
                        ..goal(Measure::Count, dec!(1))
                    }],
                    ..input()
                },
                "goals[0].conditions[0].amount",
            ),
            (
                ChallengeInput {
                    reward_points: None,
                    ..input()
                },
                "reward: at least one",
            ),
            (
                ChallengeInput {
                    reward_free_spins: Some(0),
                    ..input()
                },
                "reward.freeSpins",
            ),
            (
                ChallengeInput {
                    name: " ".into(),
                    ..input()
                },
                "name",
            ),
        ];
        for (input, start) in cases {
            let message = refusal(input);
            assert!(
                message.starts_with(start),
                "{message:?} should start with {start:?}"
            );
        }
    }

    #[test]
    fn a_published_challenge_reads_back() {
        let c = Challenge {
            id: 7,
            name: "Spender".into(),
            description: "Spend 200.00 this month".into(),
            mission: true,
            window: Window::Fixed {
                from: "2026-12-01T00:00:00Z".parse().unwrap(),
                to: "2027-01-01T00:00:00Z".parse().unwrap(),
            },
            goals: vec![Goal {
                action: "purchase".into(),
                conditions: conditions::validate(&[
                    json!({"kind": "linesInCategory", "categories": ["coffee"]}),
                ])
                .unwrap(),
                measure: Measure::SumAmount,
                target: 20_000,
            }],
            reward: ChallengeReward {
                points: Points::from_minor(100),
                free_spins: 2,
                gift_id: None,
                badge_id: Some(3),
            },
            enabled: true,
        };
        let text = serde_json::to_string(&vec![c.clone()]).unwrap();
        let back: Vec<Challenge> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![c]);
    }
}
