//! Free wheel spins (a `FreeSpins` rule credits the SPINS account; `spinWheel` spends one
//! before points) and member attributes reaching the rule engine, on a real SQLite service.
//! The admin API cannot store these rules yet, so the tests publish a ruleset row directly.
#![allow(clippy::unwrap_used)]

use loyalty_entities::{programs, rulesets};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::{json, Value};

use crate::actor::{ActionCaller, Actor, MemberActor, Role};
use crate::earning::rules::Refusal;
use crate::ledger::{Account, Kind, ONE_SPIN};
use crate::members::attributes::AttributeChange;
use crate::money::Points;
use crate::program::Program;
use crate::spending::gifts::test_support::demo;
use crate::spending::wheel::{PaidWith, Prize, SegmentInput, WheelInput};
use crate::Loyalty;

/// Publishes the live rules plus `extra` (rules as their published JSON) as a new version.
async fn publish_with(loyalty: &Loyalty, program: &Program, extra: Vec<Value>) {
    let live = loyalty.live_ruleset(program).await.unwrap();
    let mut rules = serde_json::to_value(&live.rules).unwrap();
    rules.as_array_mut().unwrap().extend(extra);
    let txn = loyalty.db().begin().await.unwrap();
    programs::Entity::update_many()
        .col_expr(
            programs::Column::RulesetVersion,
            Expr::col(programs::Column::RulesetVersion).add(1),
        )
        .filter(programs::Column::Id.eq(program.id))
        .exec(&txn)
        .await
        .unwrap();
    let version = programs::Entity::find_by_id(program.id)
        .one(&txn)
        .await
        .unwrap()
        .unwrap()
        .ruleset_version;
    rulesets::Entity::insert(rulesets::ActiveModel {
        program_id: Set(program.id),
        version: Set(version),
        rules: Set(rules.to_string()),
        published_by: Set("test".into()),
        published_at: Set(loyalty.now()),
        ..Default::default()
    })
    .exec_without_returning(&txn)
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

fn rule(id: i64, action: &str, reward: Value, conditions: Value) -> Value {
    json!({
        "id": id, "name": format!("rule {id}"), "action": action,
        "source": format!("campaign_{id}"), "reward": reward,
        "limit": {"count": 1, "period": "DAY"}, "per_object": false, "streak": null,
        "active_from": null, "active_to": null, "enabled": true, "conditions": conditions,
    })
}

fn member(subject: &str) -> Actor {
    Actor {
        program: "demo".into(),
        role: Role::Member,
        subject: subject.into(),
    }
}

fn caller(subject: &str) -> ActionCaller {
    member(subject).authorize().unwrap()
}

fn spinner(subject: &str) -> MemberActor {
    member(subject).as_member().unwrap()
}

async fn assert_audit_holds(loyalty: &Loyalty, program: &Program) {
    let report = loyalty.audit(program).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
}

#[tokio::test]
async fn a_free_spin_reward_is_a_spins_credit_that_limits_count_and_retries_find() {
    let (loyalty, program, member_id) = demo().await;
    let spins = json!({"kind": "FREE_SPINS", "value": 2});
    publish_with(
        &loyalty,
        &program,
        vec![rule(9001, "bonus_spin", spins, json!([]))],
    )
    .await;
    let me = caller("m1");

    let first = loyalty
        .record_action(&me, "bonus_spin", None, None, Some("k1"), None)
        .await
        .unwrap();
    assert!(first.awarded);
    assert_eq!(first.points, Points::ZERO);
    assert_eq!(first.balance, Points::from_minor(7_000));
    assert_eq!(first.rules.len(), 1);
    assert_eq!(first.rules[0].spins, 2);
    let [credit] = first.transactions.as_slice() else {
        panic!("one posting expected: {:?}", first.transactions)
    };
    assert_eq!(
        (credit.account, credit.kind, credit.amount),
        (Account::Spins, Kind::Earn, Points::from_minor(200))
    );
    assert_eq!(credit.source.as_deref(), Some("campaign_9001"));
    assert_eq!(credit.rule_id, Some(9001));
    assert_eq!(credit.expires_at, None);
    assert_eq!(credit.member_id, member_id);

    // The same key answers the same, posting nothing more.
    let again = loyalty
        .record_action(&me, "bonus_spin", None, None, Some("k1"), None)
        .await
        .unwrap();
    assert_eq!(again, first);
    // The rule's limit (once a day: a one-off per day) counts the SPINS credit.
    let second = loyalty
        .record_action(&me, "bonus_spin", None, None, Some("k2"), None)
        .await
        .unwrap();
    assert!(!second.awarded);
    assert_eq!(second.reason, Some(Refusal::AlreadyClaimed));
    assert!(second.transactions.is_empty());

    let view = loyalty.member(&program, member_id).await.unwrap();
    assert_eq!(view.free_spins, 2);
    assert_eq!(view.balance, Points::from_minor(7_000));
    assert_eq!(view.lifetime_earned, Points::from_minor(7_000));
    let report = loyalty.audit(&program).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    // Outstanding points are POINTS only.
    assert_eq!(report.outstanding_minor, 7_000);
}

#[tokio::test]
async fn the_wheel_spends_a_free_spin_before_points() {
    let (loyalty, program, member_id) = demo().await;
    let spins = json!({"kind": "FREE_SPINS", "value": 1});
    publish_with(
        &loyalty,
        &program,
        vec![rule(9002, "bonus_spin", spins, json!([]))],
    )
    .await;
    loyalty
        .record_action(&caller("m1"), "bonus_spin", None, None, Some("k1"), None)
        .await
        .unwrap();
    let wheel = loyalty
        .upsert_wheel(
            &program,
            None,
            WheelInput {
                name: "Free".into(),
                spin_cost: rust_decimal::Decimal::from(10),
                daily_spin_limit: 10,
                segments: vec![SegmentInput {
                    label: "nothing".into(),
                    weight: 1,
                    prize: Prize::Nothing,
                    stock: None,
                }],
            },
        )
        .await
        .unwrap();
    let me = spinner("m1");

    let free = loyalty
        .spin_wheel(&me, wheel.id, "s", "spin-1")
        .await
        .unwrap();
    assert_eq!(free.paid_with, PaidWith::FreeSpin);
    assert_eq!(free.cost, Points::ZERO);
    assert_eq!(free.balance, Points::from_minor(7_000));
    assert_eq!(free.free_spins, 0);
    let [debit] = free.transactions.as_slice() else {
        panic!("one posting expected: {:?}", free.transactions)
    };
    assert_eq!(
        (debit.account, debit.kind, debit.amount),
        (
            Account::Spins,
            Kind::Spend,
            Points::from_minor(-ONE_SPIN.minor())
        )
    );
    assert_eq!(debit.purpose.as_deref(), Some("lucky_wheel"));
    assert_eq!(
        (debit.ref_type.as_deref(), debit.ref_id.clone()),
        (Some("spin"), Some(free.spin_id.to_string()))
    );
    // A retry of the same spin answers the same, taking nothing more.
    let retried = loyalty
        .spin_wheel(&me, wheel.id, "s", "spin-1")
        .await
        .unwrap();
    assert_eq!(retried, free);

    let paid = loyalty
        .spin_wheel(&me, wheel.id, "s", "spin-2")
        .await
        .unwrap();
    assert_eq!(paid.paid_with, PaidWith::Points);
    assert_eq!(paid.cost, Points::from_minor(1_000));
    assert_eq!(paid.balance, Points::from_minor(6_000));
    assert_eq!(paid.free_spins, 0);

    let view = loyalty.member(&program, member_id).await.unwrap();
    assert_eq!(
        (view.free_spins, view.balance),
        (0, Points::from_minor(6_000))
    );
    assert_audit_holds(&loyalty, &program).await;
}

#[tokio::test]
async fn a_free_wheel_keeps_the_free_spin_and_the_daily_limit_still_holds() {
    let (loyalty, program, member_id) = demo().await;
    let spins = json!({"kind": "FREE_SPINS", "value": 1});
    publish_with(
        &loyalty,
        &program,
        vec![rule(9004, "bonus_spin", spins, json!([]))],
    )
    .await;
    loyalty
        .record_action(&caller("m1"), "bonus_spin", None, None, Some("k1"), None)
        .await
        .unwrap();
    let wheel = |cost: i64| WheelInput {
        name: "Once a day".into(),
        spin_cost: rust_decimal::Decimal::from(cost),
        daily_spin_limit: 1,
        segments: vec![SegmentInput {
            label: "nothing".into(),
            weight: 1,
            prize: Prize::Nothing,
            stock: None,
        }],
    };
    let free_wheel = loyalty
        .upsert_wheel(&program, None, wheel(0))
        .await
        .unwrap();
    let paid_wheel = loyalty
        .upsert_wheel(&program, None, wheel(10))
        .await
        .unwrap();
    let me = spinner("m1");

    let free = loyalty
        .spin_wheel(&me, free_wheel.id, "s", "f1")
        .await
        .unwrap();
    assert_eq!(
        (free.paid_with, free.cost, free.free_spins),
        (PaidWith::Points, Points::ZERO, 1)
    );
    assert!(free.transactions.is_empty());
    let used = loyalty
        .spin_wheel(&me, paid_wheel.id, "s", "p1")
        .await
        .unwrap();
    assert_eq!((used.paid_with, used.free_spins), (PaidWith::FreeSpin, 0));
    // The daily limit refuses before any payment, free spin or points.
    let refused = loyalty.spin_wheel(&me, paid_wheel.id, "s", "p2").await;
    assert!(
        matches!(refused, Err(crate::DomainError::LimitReached(_))),
        "{refused:?}"
    );
    let view = loyalty.member(&program, member_id).await.unwrap();
    assert_eq!(
        (view.free_spins, view.balance),
        (0, Points::from_minor(7_000))
    );
    assert_audit_holds(&loyalty, &program).await;
}

#[tokio::test]
async fn member_attributes_reach_the_rule_engine() {
    let (loyalty, program, _) = demo().await;
    let condition = json!([{"kind": "memberAttributeEquals", "key": "segment", "value": "gold"}]);
    let fixed = json!({"kind": "FIXED", "value": 500});
    publish_with(
        &loyalty,
        &program,
        vec![rule(9003, "vip_visit", fixed, condition)],
    )
    .await;
    let me = caller("m1");
    let set = |value: Option<&str>| {
        vec![AttributeChange {
            key: "segment".into(),
            value: value.map(str::to_owned),
        }]
    };
    let visit =
        |key: &'static str| loyalty.record_action(&me, "vip_visit", None, None, Some(key), None);

    let unset = visit("v1").await.unwrap();
    assert_eq!(unset.reason, Some(Refusal::ConditionsNotMet));
    assert_eq!(
        unset.detail.as_deref(),
        Some("conditions[0]: attribute \"segment\" is not set")
    );

    let attributes = loyalty
        .set_member_attributes(&program, "m1", set(Some("silver")))
        .await
        .unwrap();
    assert_eq!(
        attributes.get("segment").map(String::as_str),
        Some("silver")
    );
    let silver = visit("v2").await.unwrap();
    assert_eq!(
        silver.detail.as_deref(),
        Some("conditions[0]: attribute \"segment\" is \"silver\", not \"gold\"")
    );

    loyalty
        .set_member_attributes(&program, "m1", set(Some("gold")))
        .await
        .unwrap();
    let gold = visit("v3").await.unwrap();
    assert!(gold.awarded);
    assert_eq!(gold.points, Points::from_minor(500));

    let removed = loyalty
        .set_member_attributes(&program, "m1", set(None))
        .await
        .unwrap();
    assert!(removed.is_empty());
    assert_audit_holds(&loyalty, &program).await;
}
