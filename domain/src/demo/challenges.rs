//! The demo program's challenges and badges: a weekly "news explorer", a 7-day login streak
//! and a three-step shopper mission, each with a badge.

use rust_decimal::Decimal;

use crate::challenges::badges::BadgeInput;
use crate::challenges::{ChallengeInput, GoalInput, Measure, WindowKind};
use crate::error::DomainResult;
use crate::program::Program;
use crate::service::Loyalty;

fn goal(action: &str, measure: Measure, target: Decimal) -> GoalInput {
    GoalInput {
        action: action.into(),
        conditions: Vec::new(),
        measure,
        target,
    }
}

fn challenge(name: &str, description: &str, window_kind: WindowKind) -> ChallengeInput {
    ChallengeInput {
        name: name.into(),
        description: description.into(),
        mission: false,
        window_kind,
        window_from: None,
        window_to: None,
        goals: Vec::new(),
        reward_points: None,
        reward_free_spins: None,
        reward_gift_id: None,
        reward_badge_id: None,
        enabled: true,
    }
}

impl Loyalty {
    /// Adds the demo's badges and challenges and publishes them, once (nothing when the draft
    /// already has challenges).
    pub async fn seed_demo_challenges(&self, program: &Program) -> DomainResult<()> {
        if !self.draft_challenges(program).await?.is_empty() {
            return Ok(());
        }
        let existing = self.badges(program).await?;
        let badge = |code: &'static str, name: &'static str| {
            let found = existing.iter().find(|b| b.code == code).map(|b| b.id);
            let loyalty = self.clone();
            let program = program.clone();
            async move {
                match found {
                    Some(id) => Ok::<i64, crate::error::DomainError>(id),
                    None => Ok(loyalty
                        .create_badge(
                            &program,
                            BadgeInput {
                                code: code.into(),
                                name: name.into(),
                                image_url: format!("https://cdn.example.com/badges/{code}.png"),
                            },
                        )
                        .await?
                        .id),
                }
            }
        };
        let explorer = badge("news_explorer", "News explorer").await?;
        let streak = badge("seven_day_streak", "7-day streak").await?;
        let shopper = badge("mission_shopper", "Shopper").await?;

        let mut news = challenge(
            "News explorer",
            "Read 3 different news articles this week",
            WindowKind::Weekly,
        );
        news.goals = vec![goal(
            "news_read",
            Measure::DistinctObjects,
            Decimal::new(3, 0),
        )];
        news.reward_points = Some(Decimal::new(30, 0));
        news.reward_badge_id = Some(explorer);
        self.create_challenge(program, news).await?;

        let mut logins = challenge(
            "7-day streak",
            "Log in 7 days in a row this month",
            WindowKind::Monthly,
        );
        logins.goals = vec![goal("daily_login", Measure::StreakDays, Decimal::new(7, 0))];
        logins.reward_free_spins = Some(3);
        logins.reward_badge_id = Some(streak);
        self.create_challenge(program, logins).await?;

        let mut mission = challenge(
            "Shopper mission",
            "View 3 products, share one, then buy for 20.00 or more",
            WindowKind::Monthly,
        );
        mission.mission = true;
        mission.goals = vec![
            goal("product_view", Measure::DistinctObjects, Decimal::new(3, 0)),
            goal("product_share", Measure::Count, Decimal::ONE),
            goal("purchase", Measure::SumAmount, Decimal::new(2000, 2)),
        ];
        mission.reward_points = Some(Decimal::new(100, 0));
        mission.reward_badge_id = Some(shopper);
        self.create_challenge(program, mission).await?;

        self.publish_challenges(program, "demo").await.map(|_| ())
    }
}
