//! Enums kept as text in database columns. Reading one back is checked: a value the code does
//! not know is an internal error naming the column and the value, never a silent default (a
//! row the code cannot read must not turn into an EARN, a POINTS or a NOTHING).

use crate::error::{DomainError, DomainResult};

/// An enum stored as text. Implement it with [`stored_enum!`], which derives `ALL` and the text
/// from one list, so the two cannot drift apart and a new variant breaks the build until it has
/// its text.
pub trait Stored: Copy + PartialEq + std::fmt::Debug + 'static {
    /// Every variant, in declaration order.
    const ALL: &'static [Self];

    /// The text stored in the database; byte-identical to what the migrations expect.
    fn text(self) -> &'static str;

    /// Reads a value of `column` (`table.column`, for the error).
    fn read(column: &str, value: &str) -> DomainResult<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.text() == value)
            .ok_or_else(|| unknown(column, value))
    }
}

/// The internal error for a stored value the code cannot read.
pub fn unknown(column: &str, value: &str) -> DomainError {
    DomainError::internal(format!("{column}: unknown value {value:?}"))
}

/// Implements [`Stored`] and an inherent `as_str` for a field-less enum:
/// `stored_enum!(Kind { Earn => "EARN", Spend => "SPEND" });`
macro_rules! stored_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $crate::stored::Stored for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];

            fn text(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl $ty {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                $crate::stored::Stored::text(self)
            }
        }
    };
}
pub(crate) use stored_enum;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every variant reads back as itself, the texts are distinct, and an unknown value is an
    /// internal error naming the column and the value.
    pub fn assert_round_trip<T: Stored>(column: &str) {
        for &variant in T::ALL {
            assert_eq!(T::read(column, variant.text()), Ok(variant), "{column}");
        }
        let mut texts: Vec<_> = T::ALL.iter().map(|v| v.text()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), T::ALL.len(), "{column}: duplicate texts");
        assert_unknown::<T>(column, "FOO");
        // Case matters: the stored text is compared byte for byte.
        let lower = T::ALL[0].text().to_lowercase();
        let upper = T::ALL[0].text().to_uppercase();
        let other = if lower == T::ALL[0].text() {
            upper
        } else {
            lower
        };
        assert_unknown::<T>(column, &other);
    }

    pub fn assert_unknown<T: Stored>(column: &str, value: &str) {
        assert_eq!(
            T::read(column, value),
            Err(DomainError::Internal(format!(
                "{column}: unknown value \"{value}\""
            ))),
        );
    }

    #[test]
    fn every_stored_enum_round_trips_and_refuses_unknown_values() {
        use crate::challenges::badges::BadgeSource;
        use crate::challenges::{Measure, WindowKind};
        use crate::earning::rulebook::RewardKind;
        use crate::earning::rules::Period;
        use crate::ledger::{Account, Kind};
        use crate::program::QualifyOn;
        use crate::referrals::Stage;
        use crate::report::tally::Cat;
        use crate::spending::gifts::{RedemptionOrigin, RedemptionStatus};
        use crate::spending::vouchers::{StoredStatus, VoucherOrigin};
        use crate::spending::wheel::PrizeKind;

        assert_round_trip::<Account>("ledger_entries.account");
        assert_round_trip::<Kind>("ledger_entries.kind");
        assert_round_trip::<PrizeKind>("wheel_segments.prize_kind");
        assert_round_trip::<RedemptionStatus>("redemptions.status");
        assert_round_trip::<RedemptionOrigin>("redemptions.origin");
        assert_round_trip::<StoredStatus>("vouchers.status");
        assert_round_trip::<VoucherOrigin>("vouchers.origin");
        assert_round_trip::<Period>("earning_rules.limit_period");
        assert_round_trip::<RewardKind>("earning_rules.reward_kind");
        assert_round_trip::<QualifyOn>("programs.referral_qualify_on");
        assert_round_trip::<Stage>("referrals.status");
        assert_round_trip::<Cat>("report_daily.kind");
        assert_round_trip::<Measure>("challenge_goals.measure");
        assert_round_trip::<WindowKind>("challenges.window_kind");
        assert_round_trip::<BadgeSource>("member_badges.source");
        assert_round_trip::<crate::webhooks::EventType>("webhook_outbox.event_type");
        assert_round_trip::<crate::webhooks::DeliveryStatus>("webhook_outbox.status");
    }

    /// The texts are the ones the migrations and existing rows hold, byte for byte.
    #[test]
    fn stored_texts_are_unchanged() {
        use crate::ledger::{Account, Kind};
        let texts = |all: &[&str]| all.join(",");
        let of = |all: Vec<&'static str>| all.join(",");
        assert_eq!(
            of(Account::ALL.iter().map(|v| v.text()).collect()),
            texts(&["POINTS", "QUALIFICATION", "SPINS"])
        );
        assert_eq!(
            of(Kind::ALL.iter().map(|v| v.text()).collect()),
            texts(&["EARN", "SPEND", "EXPIRE", "REFUND", "REVERSAL", "ADJUST"])
        );
        assert_eq!(
            of(crate::spending::wheel::PrizeKind::ALL
                .iter()
                .map(|v| v.text())
                .collect()),
            texts(&["POINTS", "GIFT", "VOUCHER", "NOTHING"])
        );
        assert_eq!(
            of(crate::referrals::Stage::ALL
                .iter()
                .map(|v| v.text())
                .collect()),
            texts(&["PENDING", "REWARDED"])
        );
        assert_eq!(
            of(crate::program::QualifyOn::ALL
                .iter()
                .map(|v| v.text())
                .collect()),
            texts(&["REGISTRATION", "FIRST_PURCHASE"])
        );
    }
}
