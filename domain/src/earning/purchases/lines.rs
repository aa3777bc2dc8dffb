//! Order lines: what `recordPurchase` and a line refund may send, and how much of each accrual a
//! refund takes back (pure; the operations in `purchases.rs` read and write the rows).
//!
//! Every paid rule of a purchase is kept as an [`Accrual`]: its POINTS row, its points, whether
//! it also credited QUALIFICATION, and the lines it was computed on (`None` = the whole order).
//! Refunds are cumulative: after each refund an accrual's target is its points in the proportion
//! of its base refunded so far ([`target`]), and the refund takes back the target less what the
//! earlier refunds already did, so partial refunds always add up to exactly the accrual.

use std::collections::BTreeSet;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::earning::rules::conditions::{quoted, Line, MAX_VALUE_CHARS};
use crate::error::{DomainError, DomainResult};
use crate::money::Money;

/// At most this many lines on one order (and in one line refund).
pub const MAX_LINES: usize = 200;
/// A line's quantity: 1 to this many units.
pub const MAX_LINE_QUANTITY: i64 = 1_000_000;

/// A line as `recordPurchase` sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseLineInput {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    /// Money, two fraction digits at most, not negative.
    pub unit_price: Decimal,
}

/// `quantity` units of the order's line `line_number` (1-based: the first line sent is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundLineInput {
    pub line_number: i64,
    pub quantity: i64,
}

/// What a refund gives back: money, or units of the order's lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundBy {
    Amount(Decimal),
    Lines(Vec<RefundLineInput>),
}

impl RefundBy {
    /// Exactly one of `amount` and `lines` (the API's two optional arguments).
    pub fn one_of(
        amount: Option<Decimal>,
        lines: Option<Vec<RefundLineInput>>,
    ) -> DomainResult<RefundBy> {
        match (amount, lines) {
            (Some(amount), None) => Ok(RefundBy::Amount(amount)),
            (None, Some(lines)) => Ok(RefundBy::Lines(lines)),
            (Some(_), Some(_)) => Err(DomainError::validation(
                "give either amount or lines, not both",
            )),
            (None, None) => Err(DomainError::validation("amount or lines is required")),
        }
    }
}

/// A validated order line, as the operation carries it (its serialized form is part of what
/// "the same request" means for the idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OrderLine {
    pub sku: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub quantity: u32,
    pub unit_price: Money,
}

impl OrderLine {
    pub fn to_line(&self) -> Line {
        Line {
            sku: self.sku.clone(),
            category: self.category.clone(),
            quantity: self.quantity,
            unit_price: self.unit_price,
        }
    }
}

/// A validated line refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct LineRefund {
    /// 1-based.
    pub line: u32,
    pub quantity: u32,
}

fn refuse(path: &str, message: &str) -> DomainError {
    DomainError::validation(format!("{path}: {message}"))
}

fn bounded_count(inputs: usize) -> DomainResult<()> {
    if inputs == 0 {
        return Err(refuse(
            "lines",
            "must not be empty (leave it out for an order without lines)",
        ));
    }
    if inputs > MAX_LINES {
        return Err(refuse("lines", &format!("at most {MAX_LINES} lines")));
    }
    Ok(())
}

fn quantity(value: i64, path: &str) -> DomainResult<u32> {
    if value < 1 {
        return Err(refuse(path, "must be at least 1"));
    }
    if value > MAX_LINE_QUANTITY {
        return Err(refuse(
            path,
            &format!("must be at most {MAX_LINE_QUANTITY}"),
        ));
    }
    u32::try_from(value).map_err(|_| refuse(path, "out of range"))
}

fn text(value: &str, path: &str) -> DomainResult<String> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_VALUE_CHARS {
        return Err(refuse(
            path,
            &format!("must be 1 to {MAX_VALUE_CHARS} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Checks every line (the first bad field is refused with its path, `lines[2].quantity: must be
/// at least 1`) and that they add up to the order's `amount`.
pub(crate) fn validate_lines(
    inputs: &[PurchaseLineInput],
    amount: Money,
) -> DomainResult<Vec<OrderLine>> {
    bounded_count(inputs.len())?;
    let mut lines = Vec::with_capacity(inputs.len());
    let mut total: i128 = 0;
    for (index, input) in inputs.iter().enumerate() {
        let at = |field: &str| format!("lines[{index}].{field}");
        let sku = text(&input.sku, &at("sku"))?;
        let category = input
            .category
            .as_deref()
            .map(|category| text(category, &at("category")))
            .transpose()?;
        let quantity = quantity(input.quantity, &at("quantity"))?;
        let path = at("unitPrice");
        if input.unit_price < Decimal::ZERO {
            return Err(refuse(&path, "must not be negative"));
        }
        if input.unit_price.normalize().scale() > 2 {
            return Err(refuse(&path, "must have at most two fraction digits"));
        }
        let unit_price =
            Money::parse(input.unit_price, &path).map_err(|_| refuse(&path, "out of range"))?;
        total += i128::from(unit_price.minor()) * i128::from(quantity);
        lines.push(OrderLine {
            sku,
            category,
            quantity,
            unit_price,
        });
    }
    if total != i128::from(amount.minor()) {
        let total = Decimal::try_from_i128_with_scale(total, 2)
            .map(|total| total.to_string())
            .unwrap_or_else(|_| "more than any amount".to_owned());
        return Err(refuse(
            "lines",
            &format!(
                "the lines add up to {total}, not amount {}",
                amount.decimal()
            ),
        ));
    }
    Ok(lines)
}

/// The shape of a line refund (the order's own lines are checked under its member's lock).
pub(crate) fn validate_refund_lines(inputs: &[RefundLineInput]) -> DomainResult<Vec<LineRefund>> {
    bounded_count(inputs.len())?;
    let mut seen = BTreeSet::new();
    inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let path = format!("lines[{index}].lineNumber");
            let line = u32::try_from(input.line_number)
                .ok()
                .filter(|line| *line >= 1)
                .ok_or_else(|| refuse(&path, "must be at least 1"))?;
            if !seen.insert(line) {
                return Err(refuse(&path, &format!("line {line} is named twice")));
            }
            let quantity = quantity(input.quantity, &format!("lines[{index}].quantity"))?;
            Ok(LineRefund { line, quantity })
        })
        .collect()
}

/// A stored line as refunds see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineState {
    pub quantity: i64,
    pub unit_price_minor: i64,
    /// Units refunded by line refunds, this one included.
    pub refunded_quantity: i64,
}

impl LineState {
    fn value(&self) -> i128 {
        i128::from(self.quantity) * i128::from(self.unit_price_minor)
    }

    fn refunded_value(&self) -> i128 {
        i128::from(self.refunded_quantity) * i128::from(self.unit_price_minor)
    }
}

/// Checks a line refund against the order's lines (in line-number order) and applies it to
/// their refunded quantities; returns the money it refunds.
pub(crate) fn apply_line_refund(
    order_id: &str,
    lines: &mut [LineState],
    refund: &[LineRefund],
) -> DomainResult<Money> {
    let mut amount: i64 = 0;
    for (index, part) in refund.iter().enumerate() {
        let count = lines.len();
        let line = usize::try_from(part.line)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| lines.get_mut(i))
            .ok_or_else(|| {
                refuse(
                    &format!("lines[{index}].lineNumber"),
                    &format!(
                        "order {} has no line {} (it has {count})",
                        quoted(order_id),
                        part.line
                    ),
                )
            })?;
        let left = line.quantity - line.refunded_quantity;
        let wanted = i64::from(part.quantity);
        if wanted > left {
            return Err(refuse(
                &format!("lines[{index}].quantity"),
                &format!("line {} has {left} left to refund, not {wanted}", part.line),
            ));
        }
        line.refunded_quantity += wanted;
        amount = wanted
            .checked_mul(line.unit_price_minor)
            .and_then(|value| amount.checked_add(value))
            .ok_or_else(|| DomainError::validation("the refund is out of range"))?;
    }
    Ok(Money::from_minor(amount))
}

/// Money refunded by line refunds: what line refunds took (`Σ refunded quantity × unit price`).
pub(crate) fn refunded_by_lines(lines: &[LineState]) -> i64 {
    let sum: i128 = lines.iter().map(LineState::refunded_value).sum();
    i64::try_from(sum).unwrap_or(i64::MAX)
}

/// One paid rule of a purchase, as `purchases.accruals` keeps it (points in hundredths).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Accrual {
    /// The POINTS ledger row.
    pub entry: i64,
    pub points: i64,
    pub qualifying: bool,
    /// Indices into the order's lines the points were computed on; `None` = the whole order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<usize>>,
    /// The points the refunds so far should have taken back (taken or recorded unrecovered).
    #[serde(default)]
    pub reversed: i64,
}

/// An order after a refund: what the shares are computed on.
pub(crate) struct OrderAfter<'a> {
    pub amount_minor: i64,
    /// Money refunded so far, this refund included.
    pub refunded_minor: i64,
    /// Its lines with their refunded quantities (empty: an order without lines, or no accrual
    /// that needs them).
    pub lines: &'a [LineState],
}

/// How much of `total` (points computed on `lines`, `None` = the whole order) the refunds so far
/// take back, cumulatively.
///
/// - The whole order refunded: all of it.
/// - Computed on the whole order, or an order without lines: `total × refunded / amount`.
/// - Computed on some lines: in proportion of their refunded value over their value (line
///   refunds of other lines take none of it). Refunds by amount spread over every line in
///   proportion of what is left of it, so they take `left of its base / left of the order` of
///   the amount; line refunds never follow a refund by amount (the operation refuses them), so
///   that base is what line refunds left.
/// - Lines worth nothing (a free item): in proportion of their refunded units.
pub(crate) fn target(total: i64, lines: Option<&[usize]>, order: &OrderAfter<'_>) -> i64 {
    let amount = i128::from(order.amount_minor);
    let refunded = i128::from(order.refunded_minor);
    if refunded >= amount {
        return total;
    }
    let chosen: Vec<&LineState> = match lines {
        Some(indices) if !order.lines.is_empty() => {
            indices.iter().filter_map(|&i| order.lines.get(i)).collect()
        }
        _ => Vec::new(),
    };
    if chosen.is_empty() {
        return share(total, refunded, amount);
    }
    let base: i128 = chosen.iter().map(|l| l.value()).sum();
    if base == 0 {
        let units: i128 = chosen.iter().map(|l| i128::from(l.quantity)).sum();
        let back: i128 = chosen.iter().map(|l| i128::from(l.refunded_quantity)).sum();
        return share(total, back, units);
    }
    let own: i128 = chosen.iter().map(|l| l.refunded_value()).sum();
    let by_lines: i128 = order.lines.iter().map(LineState::refunded_value).sum();
    // own/base of the lines, plus the amount refunded beyond the line refunds spread over what
    // the line refunds left: (base − own) × (refunded − by_lines) / (amount − by_lines).
    let left = amount - by_lines;
    share(
        total,
        own * left + (base - own) * (refunded - by_lines),
        base * left,
    )
}

/// `total × num / den`, half to even, exactly (`total` when `num ≥ den`).
pub(crate) fn share(total: i64, num: i128, den: i128) -> i64 {
    if den <= 0 || num >= den {
        return total;
    }
    if num <= 0 {
        return 0;
    }
    let g = gcd(num, den);
    let (num, den) = (num / g, den / g);
    match i128::from(total).checked_mul(num) {
        Some(product) => {
            let (quotient, rest) = (product / den, product % den);
            let up = match (2 * rest).cmp(&den) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => quotient % 2 != 0,
                std::cmp::Ordering::Less => false,
            };
            i64::try_from(quotient + i128::from(up)).unwrap_or(total)
        }
        // Beyond any real order (both near the largest amount): a 28-digit proportion.
        None => {
            let ratio = Decimal::try_from_i128_with_scale(num, 0)
                .ok()
                .zip(Decimal::try_from_i128_with_scale(den, 0).ok())
                .and_then(|(num, den)| num.checked_div(den))
                .unwrap_or(Decimal::ONE);
            Decimal::from(total)
                .checked_mul(ratio)
                .map(|v| v.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven))
                .and_then(|v| v.to_i64())
                .unwrap_or(total)
                .clamp(0, total)
        }
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests;
