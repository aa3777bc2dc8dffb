//! Exact amounts. Points and money carry two fraction digits; every rounding in the product goes
//! through [`round2`] (banker's rounding: half to even). The database stores them as `i64`
//! hundredths ("minor units"), which is exact on PostgreSQL and SQLite alike.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// The largest amount anywhere, in hundredths: 10^13 (100,000,000,000.00 points or units of
/// money). Every input amount, computed amount, balance and lifetime total stays within it
/// (`VALIDATION` otherwise), so one bound keeps every figure exact on both backends: the sum of
/// a balance at the bound and an amount at the bound is far inside `i64` (SQLite would turn an
/// overflowing integer into a float), and about 900,000 accounts at the bound still add up
/// inside `i64` (SQLite's `SUM` of integers fails on overflow; PostgreSQL's is `numeric`).
pub const MAX_MINOR: i64 = 10_000_000_000_000;

/// The one rounding rule: two fraction digits, half to even.
pub fn round2(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// A signed number of points with two fraction digits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(i64);

impl Points {
    pub const ZERO: Points = Points(0);
    /// See [`MAX_MINOR`].
    pub const MAX: Points = Points(MAX_MINOR);

    pub const fn from_minor(minor: i64) -> Self {
        Points(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Parses a client-supplied decimal: at most two fraction digits, within limits.
    pub fn parse(value: Decimal, field: &str) -> Result<Self, DomainError> {
        minor_units(value, field).map(Points)
    }

    /// Rounds a computed value (percentages, proportions) with the product's rounding rule.
    pub fn round_from(value: Decimal) -> Result<Self, DomainError> {
        minor_units(round2(value), "amount").map(Points)
    }

    pub fn decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn abs(self) -> Self {
        Points(self.0.abs())
    }

    pub fn min(self, other: Points) -> Points {
        Points(self.0.min(other.0))
    }

    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }
}

impl std::fmt::Display for Points {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decimal().fmt(f)
    }
}

/// An amount of money in the program's currency, two fraction digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const fn from_minor(minor: i64) -> Self {
        Money(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn parse(value: Decimal, field: &str) -> Result<Self, DomainError> {
        minor_units(value, field).map(Money)
    }

    pub fn decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

fn minor_units(value: Decimal, field: &str) -> Result<i64, DomainError> {
    if value.normalize().scale() > 2 {
        return Err(DomainError::validation(format!(
            "{field} must have at most two fraction digits"
        )));
    }
    let scaled = value
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or_else(|| DomainError::validation(format!("{field} is out of range")))?
        .trunc();
    let minor: i64 = scaled
        .try_into()
        .map_err(|_| DomainError::validation(format!("{field} is out of range")))?;
    if minor.abs() > MAX_MINOR {
        return Err(DomainError::validation(format!(
            "{field} is out of range (at most {} in absolute value)",
            Points::MAX
        )));
    }
    Ok(minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(round2(dec!(0.125)), dec!(0.12));
        assert_eq!(round2(dec!(0.135)), dec!(0.14));
        assert_eq!(round2(dec!(-0.125)), dec!(-0.12));
    }

    #[test]
    fn parse_refuses_sub_cent_and_huge_values() {
        assert_eq!(
            Points::parse(dec!(12.30), "a").map(Points::minor).ok(),
            Some(1230)
        );
        assert!(Points::parse(dec!(0.001), "a").is_err());
        assert!(Points::parse(Decimal::from_i128_with_scale(10_i128.pow(27), 0), "a").is_err());
        assert_eq!(
            Points::parse(dec!(100000000000.00), "a").ok(),
            Some(Points::MAX)
        );
        assert_eq!(
            Points::parse(dec!(-100000000000), "a")
                .map(Points::minor)
                .ok(),
            Some(-MAX_MINOR)
        );
        let over = Points::parse(dec!(100000000000.01), "a").unwrap_err();
        assert!(over.to_string().contains("100000000000.00"), "{over}");
        assert_eq!(Points::from_minor(-5).decimal(), dec!(-0.05));
    }
}
