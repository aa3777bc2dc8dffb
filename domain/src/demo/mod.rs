//! `loyalty-server demo`: a program with a rule for every built-in action, gifts and a lucky
//! wheel ([`Loyalty::seed_demo`]), then four weeks of members' activity
//! ([`Loyalty::seed_demo_activity`]). Both are idempotent.

mod activity;
mod challenges;

pub use activity::{ActivitySummary, DEMO_DAYS, DEMO_MEMBERS};

use rust_decimal::Decimal;

use crate::earning::rulebook::RuleInput;
use crate::earning::rules::{Budget, Limit, Period, Reward, Streak};
use crate::error::DomainResult;
use crate::money::Points;
use crate::program::{NewProgram, Program};
use crate::service::Loyalty;
use crate::spending::wheel::{Prize, SegmentInput, WheelInput};

fn fixed(
    name: &str,
    action: &str,
    points: i64,
    limit: Option<Limit>,
    per_object: bool,
) -> RuleInput {
    RuleInput {
        limit,
        per_object,
        ..RuleInput::new(
            name,
            action,
            Reward::Fixed(Points::from_minor(points * 100)),
        )
    }
}

fn per_day(count: u32) -> Option<Limit> {
    Some(Limit {
        count,
        period: Period::Day,
    })
}

const ONCE: Option<Limit> = Some(Limit {
    count: 1,
    period: Period::Lifetime,
});

/// The demo program's rules (also a sensible starting point for a real program).
pub fn demo_rules() -> Vec<RuleInput> {
    vec![
        RuleInput {
            streak: Some(Streak {
                step: Points::from_minor(100),
                cap: Points::from_minor(1500),
            }),
            ..fixed("Daily login", "daily_login", 5, per_day(1), false)
        },
        fixed(
            "First view of a product",
            "product_view",
            2,
            per_day(10),
            true,
        ),
        fixed(
            "First read of a news item",
            "news_read",
            3,
            per_day(5),
            true,
        ),
        fixed(
            "First share of a product",
            "product_share",
            5,
            per_day(3),
            true,
        ),
        fixed("Account registration", "registration", 50, ONCE, false),
        fixed("Welcome to the program", "join", 20, ONCE, false),
        fixed(
            "Welcome, invited friend",
            "referral_friend",
            30,
            ONCE,
            false,
        ),
        fixed(
            "Thanks for inviting a friend",
            "referral_inviter",
            50,
            None,
            true,
        ),
        RuleInput {
            reward: Reward::Percent(Decimal::new(5, 0)),
            qualifying: true,
            ..fixed("5% back on purchases", "purchase", 1, None, false)
        },
    ]
}

/// The demo's campaigns: what the rule engine can say beyond "action pays N points". Kept out of
/// [`demo_rules`] (and so out of the test suite's demo program, whose clock is today's date) so
/// the plain rules pay the same on every weekday.
pub fn demo_campaigns() -> Vec<RuleInput> {
    vec![
        RuleInput {
            source: Some("weekend_double".into()),
            conditions: vec![serde_json::json!({
                "kind": "dayOfWeekIn", "days": ["saturday", "sunday"]
            })],
            ..RuleInput::new(
                "Weekend double points",
                "purchase",
                Reward::Multiplier(Decimal::TWO),
            )
        },
        RuleInput {
            source: Some("coffee_bonus".into()),
            qualifying: true,
            conditions: vec![serde_json::json!({
                "kind": "linesInCategory", "categories": ["coffee"]
            })],
            ..RuleInput::new(
                "Coffee lovers: 10 % back on coffee",
                "purchase",
                Reward::PercentOfLines(Decimal::TEN),
            )
        },
        RuleInput {
            source: Some("big_basket".into()),
            limit: Some(Limit {
                count: 1,
                period: Period::Week,
            }),
            budget: Budget {
                total: Some(Points::from_minor(50_000 * 100)),
                per_member: None,
            },
            conditions: vec![serde_json::json!({
                "kind": "orderTotalAtLeast", "amount": "50.00"
            })],
            ..RuleInput::new(
                "Big basket: 100 points on an order of 50.00 or more, once a week",
                "purchase",
                Reward::Fixed(Points::from_minor(100 * 100)),
            )
        },
    ]
}

impl Loyalty {
    /// Adds [`demo_campaigns`] to the demo program's rules and publishes them, once (a campaign
    /// whose source is already in the draft is not added again).
    pub async fn seed_demo_campaigns(&self, program: &Program) -> DomainResult<()> {
        let existing = self.draft_rules(program).await?;
        let mut added = false;
        for campaign in demo_campaigns() {
            if existing
                .iter()
                .any(|r| Some(&r.source) == campaign.source.as_ref())
            {
                continue;
            }
            self.create_rule(program, campaign).await?;
            added = true;
        }
        if added {
            self.publish_rules(program, "demo").await?;
        }
        Ok(())
    }

    async fn seed_demo_wheel(&self, program: &Program) -> DomainResult<()> {
        let actor = crate::actor::Actor {
            program: program.external_id.clone(),
            role: crate::actor::Role::Admin,
            subject: "demo".into(),
        };
        if !self.wheels(&actor.authorize()?).await?.is_empty() {
            return Ok(());
        }
        let points = |p: i64| Points::from_minor(p * 100);
        let mut segments = vec![
            SegmentInput {
                label: "5 points".into(),
                weight: 40,
                prize: Prize::Points { points: points(5) },
                stock: None,
            },
            SegmentInput {
                label: "20 points".into(),
                weight: 15,
                prize: Prize::Points { points: points(20) },
                stock: None,
            },
            SegmentInput {
                label: "Jackpot: 100 points".into(),
                weight: 2,
                prize: Prize::Points {
                    points: points(100),
                },
                stock: Some(50),
            },
            SegmentInput {
                label: "$3 voucher".into(),
                weight: 10,
                prize: Prize::Voucher { points: points(30) },
                stock: None,
            },
            SegmentInput {
                label: "Try again".into(),
                weight: 30,
                prize: Prize::Nothing,
                stock: None,
            },
        ];
        if let Some(gift) = self.gifts(program, false).await?.into_iter().next() {
            segments.push(SegmentInput {
                label: gift.name.clone(),
                weight: 3,
                prize: Prize::Gift { gift_id: gift.id },
                stock: Some(10),
            });
        }
        let wheel = WheelInput {
            name: "Lucky wheel".into(),
            spin_cost: Decimal::new(10, 0),
            daily_spin_limit: 3,
            segments,
        };
        self.upsert_wheel(program, None, wheel).await.map(|_| ())
    }

    pub async fn seed_demo(&self) -> DomainResult<Program> {
        let program = self
            .create_program(NewProgram {
                external_id: "demo".into(),
                name: "Demo Mini-App Shop".into(),
                timezone: "Asia/Ho_Chi_Minh".into(),
                currency: "USD".into(),
                points_per_currency: Decimal::new(10, 0),
                validity_days: Some(365),
            })
            .await?;
        if self.draft_rules(&program).await?.is_empty() {
            for rule in demo_rules() {
                self.create_rule(&program, rule).await?;
            }
            self.publish_rules(&program, "demo").await?;
        }
        self.seed_demo_gifts(&program).await?;
        self.seed_demo_wheel(&program).await?;
        Ok(program)
    }
}
