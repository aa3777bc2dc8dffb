//! What is sent: the event types and their payloads, derived from a transaction's postings.
//! Pure, so the shapes are unit-tested without a database.
//!
//! A payload follows the Standard Webhooks envelope: `{"type", "timestamp", "data"}`. `data`
//! always names the program and the member (`id` and `externalId`) and carries the member's
//! `version` (its posting counter), so a receiver can order a member's events and see a gap.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::ledger::{Account, Kind, Posting};
use crate::stored::{stored_enum, Stored};
use crate::tenant::Program;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    PointsEarned,
    PointsSpent,
    PointsExpired,
    PointsAdjusted,
    /// Spent points given back (a cancelled redemption).
    PointsRefunded,
    /// Earned points taken back (a refunded purchase).
    PointsReversed,
    TierChanged,
    RedemptionCreated,
    RedemptionCancelled,
    /// A redemption handed over (`fulfillRedemption`): no posting, the member's current version.
    RedemptionFulfilled,
    VoucherIssued,
    /// A voucher used at checkout (`consumeVoucher`): no posting, the member's current version.
    VoucherConsumed,
    /// A referral reward paid, to the friend (`new_user_referral`) or the inviter
    /// (`referrer_reward`): the posting's `source` says which.
    ReferralRewarded,
    /// A challenge completed (its reward paid in the same transaction): once per member,
    /// challenge and window.
    ChallengeCompleted,
    /// Sent by `sendTestWebhook` whatever the endpoint subscribed to.
    Test,
}

stored_enum!(EventType {
    PointsEarned => "points.earned",
    PointsSpent => "points.spent",
    PointsExpired => "points.expired",
    PointsAdjusted => "points.adjusted",
    PointsRefunded => "points.refunded",
    PointsReversed => "points.reversed",
    TierChanged => "member.tier_changed",
    RedemptionCreated => "redemption.created",
    RedemptionCancelled => "redemption.cancelled",
    RedemptionFulfilled => "redemption.fulfilled",
    VoucherIssued => "voucher.issued",
    VoucherConsumed => "voucher.consumed",
    ReferralRewarded => "referral.rewarded",
    ChallengeCompleted => "challenge.completed",
    Test => "webhook.test",
});

impl EventType {
    /// The types an endpoint may subscribe to (every one but the test event).
    pub fn subscribable() -> impl Iterator<Item = EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(|t| *t != EventType::Test)
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet (due, leased to a worker, or waiting for its retry).
    Pending,
    Delivered,
    /// Retries ran out (three days) or the event was given up with its endpoint.
    Dead,
}

stored_enum!(DeliveryStatus {
    Pending => "PENDING",
    Delivered => "DELIVERED",
    Dead => "DEAD",
});

/// One event, before it is fanned out to the endpoints that want it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// Stable: derived from what caused it, so a re-run or resend carries the same id.
    pub id: String,
    pub kind: EventType,
    pub member_id: Option<i64>,
    pub member_version: Option<i64>,
    pub at: DateTime<Utc>,
    pub payload: String,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn envelope(kind: EventType, at: DateTime<Utc>, data: Value) -> String {
    json!({ "type": kind.as_str(), "timestamp": timestamp(at), "data": data }).to_string()
}

fn member(program: &Program, member_id: i64, external_id: &str, version: i64) -> Value {
    json!({
        "program": program.external_id,
        "member": { "id": member_id.to_string(), "externalId": external_id },
        "memberVersion": version,
    })
}

/// The events one posting causes: a `points.*` event for every POINTS posting, and the
/// redemption or voucher event its reference names. QUALIFICATION and SPINS postings are
/// internal and send nothing of their own.
pub(crate) fn posting_events(
    program: &Program,
    posting: &Posting,
    external_id: &str,
) -> Vec<Event> {
    if posting.account != Account::Points {
        return Vec::new();
    }
    let points = match posting.kind {
        Kind::Earn => EventType::PointsEarned,
        Kind::Spend => EventType::PointsSpent,
        Kind::Expire => EventType::PointsExpired,
        Kind::Adjust => EventType::PointsAdjusted,
        Kind::Refund => EventType::PointsRefunded,
        Kind::Reversal => EventType::PointsReversed,
    };
    let reference = match (&posting.ref_type, &posting.ref_id) {
        (Some(kind), Some(id)) => json!({ "type": kind, "id": id }),
        _ => Value::Null,
    };
    let mut data = member(
        program,
        posting.member_id,
        external_id,
        posting.member_version,
    );
    data["posting"] = json!({
        "id": posting.id.to_string(),
        "account": posting.account.as_str(),
        "kind": posting.kind.as_str(),
        "amount": posting.amount.to_string(),
        "balanceAfter": posting.balance_after.map(|b| b.to_string()),
        "source": posting.source,
        "purpose": posting.purpose,
        "reference": reference,
        "ruleId": posting.rule_id.map(|id| id.to_string()),
        "expiresAt": posting.expires_at.map(timestamp),
        "note": posting.note,
        "createdAt": timestamp(posting.created_at),
    });
    let event = |kind: EventType, suffix: &str| Event {
        id: format!("evt_{}{suffix}", posting.id),
        kind,
        member_id: Some(posting.member_id),
        member_version: Some(posting.member_version),
        at: posting.created_at,
        payload: envelope(kind, posting.created_at, data.clone()),
    };
    let mut events = vec![event(points, "")];
    let follows = match (posting.ref_type.as_deref(), posting.kind) {
        (Some("redemption"), Kind::Spend) => Some((EventType::RedemptionCreated, "_redemption")),
        (Some("redemption"), Kind::Refund) => Some((EventType::RedemptionCancelled, "_redemption")),
        (Some("voucher"), Kind::Spend) => Some((EventType::VoucherIssued, "_voucher")),
        (Some("referral"), Kind::Earn) => Some((EventType::ReferralRewarded, "_referral")),
        _ => None,
    };
    if let Some((kind, suffix)) = follows {
        events.push(event(kind, suffix));
    }
    events
}

/// The event of a member moving from one tier to another (`None`: no tier), each with its name
/// when known.
pub(crate) fn tier_event(
    program: &Program,
    member_id: i64,
    external_id: &str,
    version: i64,
    from: Option<(i64, Option<&str>)>,
    to: Option<(i64, Option<&str>)>,
    at: DateTime<Utc>,
) -> Event {
    let mut data = member(program, member_id, external_id, version);
    let tier = |t: Option<(i64, Option<&str>)>| {
        t.map(|(id, name)| json!({ "id": id.to_string(), "name": name }))
    };
    data["fromTier"] = tier(from).unwrap_or(Value::Null);
    data["toTier"] = tier(to).unwrap_or(Value::Null);
    Event {
        id: format!("evt_m{member_id}_v{version}_tier"),
        kind: EventType::TierChanged,
        member_id: Some(member_id),
        member_version: Some(version),
        at,
        payload: envelope(EventType::TierChanged, at, data),
    }
}

/// An event of a member that posted nothing (a fulfilled redemption, a used voucher): `object`
/// goes under `key` in `data`, `version` is the member's posting counter when it happened.
#[allow(clippy::too_many_arguments)]
pub(crate) fn member_event(
    program: &Program,
    kind: EventType,
    id: String,
    member_id: i64,
    external_id: &str,
    version: i64,
    at: DateTime<Utc>,
    (key, object): (&str, Value),
) -> Event {
    let mut data = member(program, member_id, external_id, version);
    data[key] = object;
    Event {
        id,
        kind,
        member_id: Some(member_id),
        member_version: Some(version),
        at,
        payload: envelope(kind, at, data),
    }
}

/// A test event for one endpoint (no member).
pub(crate) fn test_event(program: &Program, at: DateTime<Utc>) -> Event {
    let id = format!("evt_test_{}", uuid::Uuid::new_v4().simple());
    let data = json!({ "program": program.external_id, "test": true });
    Event {
        id,
        kind: EventType::Test,
        member_id: None,
        member_version: None,
        at,
        payload: envelope(EventType::Test, at, data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Points;
    use crate::tenant::ReferralPolicy;

    fn program() -> Program {
        Program {
            id: 1,
            external_id: "shop".into(),
            name: "Shop".into(),
            tz: chrono_tz::UTC,
            currency: "USD".into(),
            points_per_currency: rust_decimal::Decimal::ONE,
            validity_days: None,
            referral_link_template: None,
            referrals: ReferralPolicy {
                on_first_purchase: false,
                daily_cap: None,
                lifetime_cap: None,
            },
        }
    }

    fn posting(account: Account, kind: Kind, reference: Option<(&str, &str)>) -> Posting {
        Posting {
            id: 42,
            member_id: 7,
            account,
            amount: Points::from_minor(1_050),
            kind,
            source: Some("purchase".into()),
            purpose: None,
            ref_type: reference.map(|r| r.0.to_owned()),
            ref_id: reference.map(|r| r.1.to_owned()),
            rule_id: None,
            ruleset_version: None,
            member_version: 3,
            expires_at: None,
            note: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            balance_after: Some(Points::from_minor(2_000)),
        }
    }

    #[test]
    fn a_points_posting_is_one_event_with_a_stable_id_and_the_member_version() {
        let events = posting_events(
            &program(),
            &posting(Account::Points, Kind::Earn, None),
            "u1",
        );
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, "evt_42");
        assert_eq!(event.kind, EventType::PointsEarned);
        assert_eq!(event.member_version, Some(3));
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["type"], "points.earned");
        assert_eq!(payload["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(payload["data"]["member"]["externalId"], "u1");
        assert_eq!(payload["data"]["memberVersion"], 3);
        assert_eq!(payload["data"]["posting"]["amount"], "10.50");
        assert_eq!(payload["data"]["posting"]["balanceAfter"], "20.00");
    }

    #[test]
    fn internal_accounts_send_nothing_and_references_add_their_event() {
        let p = program();
        assert!(
            posting_events(&p, &posting(Account::Qualification, Kind::Earn, None), "u").is_empty()
        );
        assert!(posting_events(&p, &posting(Account::Spins, Kind::Earn, None), "u").is_empty());
        let kinds = |kind, reference| {
            posting_events(&p, &posting(Account::Points, kind, reference), "u")
                .iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(Kind::Spend, Some(("redemption", "9"))),
            [EventType::PointsSpent, EventType::RedemptionCreated]
        );
        assert_eq!(
            kinds(Kind::Refund, Some(("redemption", "9"))),
            [EventType::PointsRefunded, EventType::RedemptionCancelled]
        );
        assert_eq!(
            kinds(Kind::Spend, Some(("voucher", "3"))),
            [EventType::PointsSpent, EventType::VoucherIssued]
        );
        assert_eq!(
            kinds(Kind::Expire, Some(("lot", "1"))),
            [EventType::PointsExpired]
        );
        assert_eq!(
            kinds(Kind::Earn, Some(("referral", "5"))),
            [EventType::PointsEarned, EventType::ReferralRewarded]
        );
    }

    #[test]
    fn the_test_event_cannot_be_subscribed_to() {
        assert!(EventType::subscribable().all(|t| t != EventType::Test));
        assert_eq!(EventType::subscribable().count(), EventType::ALL.len() - 1);
    }
}
