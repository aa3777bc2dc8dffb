use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/_-]{1,12}"
}

fn names() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(name(), 1..5)
}

fn amount() -> impl Strategy<Value = Money> {
    (1..=crate::money::MAX_MINOR).prop_map(Money::from_minor)
}

fn condition() -> impl Strategy<Value = Condition> {
    let days = prop::collection::btree_set(prop::sample::select(Weekday::ALL.to_vec()), 1..=7);
    let window = (0_u16..1440, 1_u16..=1440)
        .prop_filter("from < to", |(from, to)| from < to)
        .prop_map(|(from, to)| Condition::LocalTimeBetween {
            from: TimeOfDay::new(from / 60, from % 60).unwrap(),
            to: TimeOfDay::new(to / 60, to % 60).unwrap(),
        });
    prop_oneof![
        amount().prop_map(|amount| Condition::OrderTotalAtLeast { amount }),
        amount().prop_map(|amount| Condition::OrderTotalBelow { amount }),
        (
            names(),
            prop::option::of(1..=MAX_MIN_QUANTITY),
            prop::option::of(amount())
        )
            .prop_map(|(skus, min_quantity, min_value)| Condition::LinesWithSku {
                skus,
                min_quantity,
                min_value
            }),
        (
            names(),
            prop::option::of(1..=MAX_MIN_QUANTITY),
            prop::option::of(amount())
        )
            .prop_map(
                |(categories, min_quantity, min_value)| Condition::LinesInCategory {
                    categories,
                    min_quantity,
                    min_value
                }
            ),
        prop::collection::btree_set(1_i64..=i64::MAX, 1..5)
            .prop_map(|tier_ids| Condition::TierIn { tier_ids }),
        days.prop_map(|days| Condition::DayOfWeekIn { days }),
        window,
        Just(Condition::FirstPurchase),
        (1..=MAX_NTH_PURCHASE).prop_map(|n| Condition::NthPurchase { n }),
        (1..=MAX_JOINED_WITHIN_DAYS).prop_map(|days| Condition::JoinedWithinDays { days }),
        names().prop_map(|ids| Condition::ObjectIdIn { ids }),
        name().prop_map(|prefix| Condition::ObjectIdPrefix { prefix }),
        ("[a-z0-9_]{1,20}", "\\PC{1,20}")
            .prop_map(|(key, value)| Condition::MemberAttributeEquals { key, value }),
        (
            1..=MAX_ACTION_COUNT,
            prop::sample::select(vec![
                Period::Day,
                Period::Week,
                Period::Month,
                Period::Lifetime
            ])
        )
            .prop_map(|(count, period)| Condition::ActionCountAtLeast { count, period }),
    ]
}

fn any_facts() -> impl Strategy<Value = Facts> {
    let line = (name(), prop::option::of(name()), any::<u32>(), any::<i64>()).prop_map(
        |(sku, category, quantity, unit)| Line {
            sku,
            category,
            quantity,
            unit_price: Money::from_minor(unit),
        },
    );
    let tz = prop::sample::select(vec![
        chrono_tz::UTC,
        HCM,
        BERLIN,
        chrono_tz::America::St_Johns,
    ]);
    let instant = (-62_000_000_000_i64..250_000_000_000)
        .prop_map(|secs| DateTime::from_timestamp(secs, 0).unwrap_or_default());
    (
        (
            prop::option::of(any::<i64>()),
            prop::collection::vec(line, 0..4),
        ),
        prop::option::of((any::<i64>(), name())),
        (instant.clone(), tz, prop::option::of(any::<u32>())),
        (prop::option::of(instant), prop::option::of(name())),
        (
            prop::collection::hash_map(name(), name(), 0..3),
            prop::option::of((name(), any::<[u32; 4]>())),
        ),
    )
        .prop_map(
            |(
                (total, lines),
                tier,
                (at, tz, ordinal),
                (joined_at, object_id),
                (attributes, counts),
            )| Facts {
                order_total: total.map(Money::from_minor),
                lines,
                tier: tier.map(|(id, name)| TierFact { id, name }),
                at,
                tz,
                purchase_ordinal: ordinal,
                joined_at,
                object_id,
                attributes,
                badges: Default::default(),
                action_counts: counts.map(|(action, [day, week, month, lifetime])| ActionCounts {
                    action,
                    day,
                    week,
                    month,
                    lifetime,
                }),
            },
        )
}

proptest! {
    #[test]
    fn validate_of_serialize_is_identity(conditions in prop::collection::vec(condition(), 0..=MAX_CONDITIONS)) {
        let json: Vec<Value> = conditions.iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        let through_serde: Vec<Condition> = json
            .iter()
            .map(|value| serde_json::from_value(value.clone()).unwrap())
            .collect();
        prop_assert_eq!(&through_serde, &conditions);
        prop_assert_eq!(validate(&json), Ok(conditions));
    }

    #[test]
    fn evaluation_never_panics(conditions in prop::collection::vec(condition(), 0..6), facts in any_facts()) {
        match evaluate(&conditions, &facts) {
            Outcome::Pass => {}
            Outcome::Fail { index, reason } => {
                prop_assert!(index < conditions.len());
                prop_assert!(!reason.is_empty());
            }
        }
        for condition in &conditions {
            let _ = matching_lines_value(condition, &facts);
        }
    }
}
