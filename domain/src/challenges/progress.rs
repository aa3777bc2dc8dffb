//! Progress, as pure functions: how one event moves a goal ([`step`]), which goals an event may
//! move ([`advancing_goals`]: all of them, or a mission's open step only), and the fold of a
//! challenge over a window's events ([`fold_challenge`]). Events are filtered by the goal's
//! conditions exactly as rules filter them (`conditions::evaluate` over the event's `Facts`).
//!
//! The posting transaction (next slice) keeps a [`GoalState`] per goal in `challenge_progress`
//! (`value`, `last_day`, `completed_at`) and the distinct values in `challenge_marks`.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use super::model::{Challenge, Goal, Measure};
use super::window::WindowSpan;
use crate::earning::rules::conditions::{
    evaluate, is_line_condition, line_matches, matching_lines_value, Facts, Outcome,
};
use crate::periods::local_date;

/// One recorded event: its action and what it knows (the same `Facts` rules are checked on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalEvent {
    pub action: String,
    pub facts: Facts,
}

/// A goal's progress within one window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalState {
    /// Count, minor units, distinct values or the current run of days (by the goal's measure).
    pub value: i64,
    /// The distinct object ids or categories already counted.
    pub seen: BTreeSet<String>,
    /// The last local day that counted (streaks).
    pub last_day: Option<NaiveDate>,
    /// When the value first reached the target; never undone.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A challenge's progress within one window: one state per goal, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeState {
    pub goals: Vec<GoalState>,
}

impl ChallengeState {
    pub fn new(challenge: &Challenge) -> Self {
        ChallengeState {
            goals: vec![GoalState::default(); challenge.goals.len()],
        }
    }

    /// When the last goal completed, once all have.
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.goals
            .iter()
            .map(|g| g.completed_at)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

/// Whether the event is one the goal counts: its action, and every condition holds.
fn counts(goal: &Goal, event: &GoalEvent) -> bool {
    event.action == goal.action && evaluate(&goal.conditions, &event.facts) == Outcome::Pass
}

/// The amount an event adds to a `SUM_AMOUNT` goal: the value of the lines the goal's first
/// line condition matches when it has one (as "% of the matching lines" computes it), the
/// order total otherwise.
fn amount_minor(goal: &Goal, facts: &Facts) -> i64 {
    goal.conditions
        .iter()
        .find_map(|c| matching_lines_value(c, facts))
        .or(facts.order_total)
        .map(|m| m.minor())
        .unwrap_or(0)
}

/// The categories an event shows a `DISTINCT_CATEGORIES` goal: of the lines its line
/// conditions match (all lines without one).
fn categories(goal: &Goal, facts: &Facts) -> Vec<String> {
    let filters: Vec<_> = goal
        .conditions
        .iter()
        .filter(|c| is_line_condition(c))
        .collect();
    facts
        .lines
        .iter()
        .filter(|line| filters.is_empty() || filters.iter().any(|c| line_matches(c, line)))
        .filter_map(|line| line.category.clone())
        .collect()
}

/// Moves one goal by one event; returns whether its state changed. A completed goal keeps
/// counting (the member sees how far past the target they went) but stays completed at the
/// instant it first reached the target.
pub fn step(goal: &Goal, state: &mut GoalState, event: &GoalEvent) -> bool {
    if !counts(goal, event) {
        return false;
    }
    let facts = &event.facts;
    let changed = match goal.measure {
        Measure::Count => {
            state.value = state.value.saturating_add(1);
            true
        }
        Measure::SumAmount => {
            let amount = amount_minor(goal, facts);
            state.value = state.value.saturating_add(amount.max(0));
            amount > 0
        }
        Measure::DistinctObjects => match &facts.object_id {
            Some(object) if state.seen.insert(object.clone()) => {
                state.value = state.value.saturating_add(1);
                true
            }
            _ => false,
        },
        Measure::DistinctCategories => {
            let mut changed = false;
            for category in categories(goal, facts) {
                if state.seen.insert(category) {
                    state.value = state.value.saturating_add(1);
                    changed = true;
                }
            }
            changed
        }
        Measure::StreakDays => {
            let day = local_date(facts.tz, facts.at);
            match state.last_day {
                Some(last) if last >= day => false,
                Some(last) if last.succ_opt() == Some(day) => {
                    state.value = state.value.saturating_add(1);
                    state.last_day = Some(day);
                    true
                }
                _ => {
                    state.value = 1;
                    state.last_day = Some(day);
                    true
                }
            }
        }
    };
    if changed && state.completed_at.is_none() && state.value >= goal.target {
        state.completed_at = Some(facts.at);
    }
    changed
}

/// The goals an event may move: every goal, or for a mission only its open step (the first
/// not complete; none once all are).
pub fn advancing_goals(challenge: &Challenge, state: &ChallengeState) -> Vec<usize> {
    if challenge.mission {
        state
            .goals
            .iter()
            .position(|g| g.completed_at.is_none())
            .into_iter()
            .collect()
    } else {
        (0..challenge.goals.len()).collect()
    }
}

/// Applies one event to a challenge's state; returns the goals it moved. A mission's step
/// completed by this event does not pass the same event on to the next step.
pub fn apply_event(
    challenge: &Challenge,
    state: &mut ChallengeState,
    event: &GoalEvent,
) -> Vec<usize> {
    advancing_goals(challenge, state)
        .into_iter()
        .filter(
            |&index| match (challenge.goals.get(index), state.goals.get_mut(index)) {
                (Some(goal), Some(goal_state)) => step(goal, goal_state, event),
                _ => false,
            },
        )
        .collect()
}

/// A challenge's progress in one window from its events in order (events outside the window
/// are skipped).
pub fn fold_challenge(
    challenge: &Challenge,
    window: &WindowSpan,
    events: &[GoalEvent],
) -> ChallengeState {
    let mut state = ChallengeState::new(challenge);
    for event in events.iter().filter(|e| window.contains(e.facts.at)) {
        apply_event(challenge, &mut state, event);
    }
    state
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono_tz::Tz;
    use serde_json::json;

    use super::*;
    use crate::challenges::model::{ChallengeReward, Window};
    use crate::challenges::window::window_at;
    use crate::earning::rules::conditions::{self, Line};
    use crate::money::Money;

    const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn facts(at: &str) -> Facts {
        Facts {
            order_total: None,
            lines: Vec::new(),
            tier: None,
            at: t(at),
            tz: HCM,
            purchase_ordinal: None,
            joined_at: None,
            object_id: None,
            attributes: HashMap::new(),
            badges: Default::default(),
            action_counts: None,
        }
    }

    fn action(name: &str, at: &str, object: Option<&str>) -> GoalEvent {
        GoalEvent {
            action: name.into(),
            facts: Facts {
                object_id: object.map(str::to_owned),
                ..facts(at)
            },
        }
    }

    fn purchase(at: &str, total_minor: i64, lines: &[(&str, i64)]) -> GoalEvent {
        GoalEvent {
            action: "purchase".into(),
            facts: Facts {
                order_total: Some(Money::from_minor(total_minor)),
                lines: lines
                    .iter()
                    .map(|(category, price)| Line {
                        sku: format!("sku-{category}"),
                        category: Some((*category).to_owned()),
                        quantity: 1,
                        unit_price: Money::from_minor(*price),
                    })
                    .collect(),
                ..facts(at)
            },
        }
    }

    fn goal(action: &str, measure: Measure, target: i64, conds: &[serde_json::Value]) -> Goal {
        Goal {
            action: action.into(),
            conditions: conditions::validate(conds).unwrap(),
            measure,
            target,
        }
    }

    fn challenge(mission: bool, window: Window, goals: Vec<Goal>) -> Challenge {
        Challenge {
            id: 1,
            name: "c".into(),
            description: String::new(),
            mission,
            window,
            goals,
            reward: ChallengeReward::default(),
            enabled: true,
        }
    }

    fn fold_goal(goal: &Goal, events: &[GoalEvent]) -> GoalState {
        let mut state = GoalState::default();
        for event in events {
            step(goal, &mut state, event);
        }
        state
    }

    #[test]
    fn count_counts_the_trigger_action_that_meets_the_conditions() {
        let g = goal(
            "news_read",
            Measure::Count,
            3,
            &[json!({"kind": "objectIdPrefix", "prefix": "news/sport/"})],
        );
        let state = fold_goal(
            &g,
            &[
                action("news_read", "2026-12-01T01:00:00Z", Some("news/sport/1")),
                action("news_read", "2026-12-01T02:00:00Z", Some("news/politics/1")),
                action("product_view", "2026-12-01T03:00:00Z", Some("news/sport/2")),
                action("news_read", "2026-12-01T04:00:00Z", Some("news/sport/1")),
                action("news_read", "2026-12-01T05:00:00Z", Some("news/sport/3")),
                action("news_read", "2026-12-01T06:00:00Z", Some("news/sport/4")),
            ],
        );
        assert_eq!(state.value, 4);
        assert_eq!(state.completed_at, Some(t("2026-12-01T05:00:00Z")));
    }

    #[test]
    fn sum_adds_order_totals_or_the_matching_lines() {
        let total = goal("purchase", Measure::SumAmount, 20_000, &[]);
        let events = [
            purchase(
                "2026-12-01T01:00:00Z",
                12_000,
                &[("coffee", 2_000), ("tea", 10_000)],
            ),
            purchase("2026-12-02T01:00:00Z", 8_000, &[("coffee", 8_000)]),
        ];
        let state = fold_goal(&total, &events);
        assert_eq!(state.value, 20_000);
        assert_eq!(state.completed_at, Some(t("2026-12-02T01:00:00Z")));

        let coffee = goal(
            "purchase",
            Measure::SumAmount,
            20_000,
            &[json!({"kind": "linesInCategory", "categories": ["coffee"]})],
        );
        let state = fold_goal(&coffee, &events);
        assert_eq!(state.value, 10_000);
        assert_eq!(state.completed_at, None);
    }

    #[test]
    fn distinct_objects_and_categories_count_each_value_once() {
        let objects = goal("product_view", Measure::DistinctObjects, 2, &[]);
        let state = fold_goal(
            &objects,
            &[
                action("product_view", "2026-12-01T01:00:00Z", Some("p1")),
                action("product_view", "2026-12-01T02:00:00Z", Some("p1")),
                action("product_view", "2026-12-01T03:00:00Z", None),
                action("product_view", "2026-12-01T04:00:00Z", Some("p2")),
            ],
        );
        assert_eq!(state.value, 2);
        assert_eq!(state.completed_at, Some(t("2026-12-01T04:00:00Z")));

        // "First purchase in 3 categories".
        let categories = goal("purchase", Measure::DistinctCategories, 3, &[]);
        let state = fold_goal(
            &categories,
            &[
                purchase(
                    "2026-12-01T01:00:00Z",
                    3_000,
                    &[("coffee", 1_000), ("tea", 2_000)],
                ),
                purchase("2026-12-02T01:00:00Z", 1_000, &[("coffee", 1_000)]),
                purchase("2026-12-03T01:00:00Z", 1_000, &[("cake", 1_000)]),
            ],
        );
        assert_eq!(state.value, 3);
        assert_eq!(state.seen.len(), 3);
        assert_eq!(state.completed_at, Some(t("2026-12-03T01:00:00Z")));
    }

    #[test]
    fn a_streak_counts_consecutive_local_days_and_restarts_after_a_gap() {
        let g = goal("daily_login", Measure::StreakDays, 3, &[]);
        // Local (UTC+7) days: Dec 1, Dec 1 again, Dec 2 (late UTC Dec 1 is local Dec 2), Dec 4.
        let broken = fold_goal(
            &g,
            &[
                action("daily_login", "2026-12-01T01:00:00Z", None),
                action("daily_login", "2026-12-01T09:00:00Z", None),
                action("daily_login", "2026-12-01T18:00:00Z", None),
                action("daily_login", "2026-12-03T18:00:00Z", None),
            ],
        );
        assert_eq!(broken.value, 1);
        assert_eq!(broken.last_day, NaiveDate::from_ymd_opt(2026, 12, 4));
        assert_eq!(broken.completed_at, None);

        let kept = fold_goal(
            &g,
            &[
                action("daily_login", "2026-12-01T01:00:00Z", None),
                action("daily_login", "2026-12-01T18:00:00Z", None),
                action("daily_login", "2026-12-02T23:30:00Z", None),
            ],
        );
        assert_eq!(kept.value, 3);
        assert_eq!(kept.completed_at, Some(t("2026-12-02T23:30:00Z")));
    }

    #[test]
    fn a_mission_step_does_not_progress_before_the_one_before_completes() {
        let mission = challenge(
            true,
            Window::Weekly,
            vec![
                goal("news_read", Measure::Count, 2, &[]),
                goal("product_share", Measure::Count, 1, &[]),
            ],
        );
        let mut state = ChallengeState::new(&mission);
        // Step 2's action before step 1 is done: nothing moves.
        let moved = apply_event(
            &mission,
            &mut state,
            &action("product_share", "2026-12-01T01:00:00Z", None),
        );
        assert!(moved.is_empty());
        assert_eq!(state.goals[1].value, 0);
        assert_eq!(advancing_goals(&mission, &state), vec![0]);
        for at in ["2026-12-01T02:00:00Z", "2026-12-01T03:00:00Z"] {
            assert_eq!(
                apply_event(&mission, &mut state, &action("news_read", at, None)),
                vec![0]
            );
        }
        assert_eq!(advancing_goals(&mission, &state), vec![1]);
        assert_eq!(state.completed_at(), None);
        apply_event(
            &mission,
            &mut state,
            &action("product_share", "2026-12-01T04:00:00Z", None),
        );
        assert_eq!(state.goals[1].value, 1);
        assert_eq!(state.completed_at(), Some(t("2026-12-01T04:00:00Z")));
        assert!(advancing_goals(&mission, &state).is_empty());

        // Without `mission` the same events move both goals independently.
        let plain = Challenge {
            mission: false,
            ..mission
        };
        let window = window_at(&plain.window, HCM, t("2026-12-01T01:00:00Z")).unwrap();
        let state = fold_challenge(
            &plain,
            &window,
            &[
                action("product_share", "2026-12-01T01:00:00Z", None),
                action("news_read", "2026-12-01T02:00:00Z", None),
            ],
        );
        assert_eq!(state.goals[0].value, 1);
        assert_eq!(state.goals[1].value, 1);
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let weekly = challenge(
            false,
            Window::Weekly,
            vec![goal("news_read", Measure::Count, 3, &[])],
        );
        let events = [
            // Sunday 2026-12-06 23:59 local (UTC+7): this week.
            action("news_read", "2026-12-06T16:59:00Z", None),
            // Monday 2026-12-07 00:00 local: the next week.
            action("news_read", "2026-12-06T17:00:00Z", None),
            action("news_read", "2026-12-07T03:00:00Z", None),
        ];
        let this_week = window_at(&weekly.window, HCM, t("2026-12-06T16:59:00Z")).unwrap();
        let next_week = window_at(&weekly.window, HCM, t("2026-12-06T17:00:00Z")).unwrap();
        assert_eq!(
            fold_challenge(&weekly, &this_week, &events).goals[0].value,
            1
        );
        assert_eq!(
            fold_challenge(&weekly, &next_week, &events).goals[0].value,
            2
        );
    }
}
