//! Discount vouchers: points become a code worth money at checkout (`redeemDiscount`), or a
//! wheel prize ([`grant_voucher`]). A voucher is a bearer instrument, so its code is drawn from
//! the OS CSPRNG; `consumeVoucher` marks it used with one conditional update, so it is used once
//! however many checkouts race for it.
//!
//! Value = `round2(points ÷ pointsPerCurrency)`: the program's ratio, rounded once to two
//! fraction digits half to even (the product's one rounding rule, [`round2`]). A voucher is
//! valid for [`VOUCHER_VALIDITY`] (30 days); an expired voucher cannot be used and its points
//! are not returned.

use chrono::{DateTime, TimeDelta, Utc};
use loyalty_entities::vouchers;
use rand::rngs::OsRng;
use rand::TryRngCore;
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::actor::{MemberActor, ServiceActor};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{retry, run_detached, stmt, MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Posting, Tx};
use crate::members::MAX_PAGE;
use crate::money::{round2, Money, Points};
use crate::program::Program;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// How long a voucher can be used after it is issued.
pub const VOUCHER_VALIDITY: TimeDelta = TimeDelta::days(30);
/// Unambiguous alphabet (no 0/O, 1/I/L): 31 symbols.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// 12 symbols of 31: about 59 bits, unguessable at any rate limit.
pub const CODE_LEN: usize = 12;
/// Random bytes at or above this are dropped, so each symbol is equally likely (248 = 8 × 31).
const ACCEPT_BELOW: usize = 256 - 256 % CODE_ALPHABET.len();
const MAX_CODE_LEN: usize = 32;
const MAX_ORDER_ID_LEN: usize = 200;
/// The spend purpose (report key) of discount vouchers.
pub const PURPOSE: &str = "discount";

/// Appends symbols drawn from `bytes` (rejection sampling: no modulo bias) until `code` is full.
fn push_symbols(code: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        if code.len() >= CODE_LEN {
            return;
        }
        let byte = usize::from(byte);
        if byte < ACCEPT_BELOW {
            code.push(char::from(CODE_ALPHABET[byte % CODE_ALPHABET.len()]));
        }
    }
}

/// A fresh voucher code from the operating system's CSPRNG.
pub fn new_voucher_code() -> DomainResult<String> {
    let mut code = String::with_capacity(CODE_LEN);
    let mut bytes = [0u8; 16];
    while code.len() < CODE_LEN {
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|err| DomainError::internal(format!("OS random source failed: {err}")))?;
        push_symbols(&mut code, &bytes);
    }
    Ok(code)
}

/// The money a number of points buys: `round2(points ÷ points_per_currency)`. `VALIDATION` when
/// that is less than one cent.
pub fn voucher_value(points: Points, program: &Program) -> DomainResult<Money> {
    let value = points
        .decimal()
        .checked_div(program.points_per_currency)
        .map(round2)
        .ok_or_else(|| DomainError::validation("points is out of range"))?;
    let value = Money::parse(value, "value")?;
    if value.minor() <= 0 {
        return Err(DomainError::validation(format!(
            "{points} points are worth less than 0.01 {} (the program gives 1 {} per {} points)",
            program.currency, program.currency, program.points_per_currency
        )));
    }
    Ok(value)
}

/// Whether a voucher can still be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoucherStatus {
    Active,
    Used,
    /// Not used before `expires_at` (derived from the clock, not stored).
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoucherOrigin {
    /// Bought with points (`redeemDiscount`).
    Discount,
    /// Won on the lucky wheel (no debit).
    Wheel,
}

stored_enum!(VoucherOrigin {
    Discount => "discount",
    Wheel => "wheel",
});

/// What `vouchers.status` holds; [`VoucherStatus::Expired`] is derived from the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredStatus {
    Active,
    Used,
}

stored_enum!(StoredStatus {
    Active => "ACTIVE",
    Used => "USED",
});

/// A discount voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub id: i64,
    pub member_id: i64,
    pub code: String,
    /// Points it cost (or was worth, for a wheel prize).
    pub points: Points,
    /// Money off, in `currency`.
    pub value: Money,
    pub currency: String,
    pub status: VoucherStatus,
    pub origin: VoucherOrigin,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Voucher {
    fn from_model(m: vouchers::Model, program: &Program, now: DateTime<Utc>) -> DomainResult<Self> {
        let status = match StoredStatus::read("vouchers.status", &m.status)? {
            StoredStatus::Used => VoucherStatus::Used,
            StoredStatus::Active if m.expires_at <= now => VoucherStatus::Expired,
            StoredStatus::Active => VoucherStatus::Active,
        };
        Ok(Voucher {
            id: m.id,
            member_id: m.member_id,
            code: m.code,
            points: Points::from_minor(m.points_minor),
            value: Money::from_minor(m.value_minor),
            currency: program.currency.clone(),
            status,
            origin: VoucherOrigin::read("vouchers.origin", &m.origin)?,
            expires_at: m.expires_at,
            used_at: m.used_at,
            order_id: m.order_id,
            created_at: m.created_at,
        })
    }
}

/// What `redeemDiscount` answers (and stores under the idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountOutcome {
    pub voucher: Voucher,
    pub balance: Points,
    pub transaction: Posting,
}

/// Inserts an `ACTIVE` voucher for the locked member under a fresh code. A code already taken
/// (about one chance in 10^17 per pair) is skipped with `ON CONFLICT DO NOTHING`, which keeps
/// the transaction usable, and another code is drawn.
async fn insert_voucher(
    tx: &Tx<'_>,
    points: Points,
    value: Money,
    origin: VoucherOrigin,
) -> TxResult<vouchers::Model> {
    for _ in 0..4 {
        let inserted = vouchers::Entity::insert(vouchers::ActiveModel {
            program_id: Set(tx.program.id),
            member_id: Set(tx.member.id),
            code: Set(new_voucher_code()?),
            points_minor: Set(points.minor()),
            value_minor: Set(value.minor()),
            status: Set(StoredStatus::Active.as_str().to_owned()),
            origin: Set(origin.as_str().to_owned()),
            spend_entry_id: Set(None),
            expires_at: Set(tx.now + VOUCHER_VALIDITY),
            used_at: Set(None),
            order_id: Set(None),
            created_at: Set(tx.now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(vouchers::Column::Code)
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning(tx.txn)
        .await;
        match inserted {
            Ok(row) => return Ok(row),
            // No row came back: the code was taken.
            Err(DbErr::RecordNotFound(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(TxError::Domain(DomainError::internal(
        "no free voucher code after 4 draws",
    )))
}

/// Gives the locked member a voucher worth `points ÷ ratio` as a prize, inside the caller's
/// operation: origin `wheel`, nothing debited. `VALIDATION` when it would be worth under 0.01.
pub(crate) async fn grant_voucher(tx: &mut Tx<'_>, points: Points) -> TxResult<Voucher> {
    if !points.is_positive() {
        return Err(TxError::Domain(DomainError::validation(
            "voucher points must be positive",
        )));
    }
    let value = voucher_value(points, tx.program)?;
    let row = insert_voucher(tx, points, value, VoucherOrigin::Wheel).await?;
    Ok(Voucher::from_model(row, tx.program, tx.now)?)
}

#[derive(Clone, Serialize)]
struct RedeemDiscountOp {
    points: Points,
    #[serde(skip)]
    member: MemberRef,
    #[serde(skip)]
    key: IdempotencyKey,
}

#[async_trait::async_trait]
impl Operation for RedeemDiscountOp {
    type Output = DiscountOutcome;
    const NAME: &'static str = "redeemDiscount";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(&self.key)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<DiscountOutcome> {
        let value = voucher_value(self.points, tx.program)?;
        let balance = tx.balance(Account::Points).await?;
        if balance < self.points {
            // Refused before a code is drawn; the debit below checks again.
            return Err(TxError::Domain(DomainError::InsufficientPoints(format!(
                "balance {balance} is less than {}",
                self.points
            ))));
        }
        let row = insert_voucher(tx, self.points, value, VoucherOrigin::Discount).await?;
        let entry = Entry::new(Account::Points, Kind::Spend, self.points)
            .label(PURPOSE)
            .reference("voucher", row.id.to_string())
            .key(Some(self.key.ledger_key(0)));
        let posting = tx.debit_in_full(entry).await?;
        vouchers::Entity::update_many()
            .col_expr(
                vouchers::Column::SpendEntryId,
                Expr::value(Some(posting.id)),
            )
            .filter(vouchers::Column::Id.eq(row.id))
            .exec(tx.txn)
            .await?;
        Ok(DiscountOutcome {
            voucher: Voucher::from_model(row, tx.program, tx.now)?,
            balance: tx.balance(Account::Points).await?,
            transaction: posting,
        })
    }
}

/// Codes are shown in upper case; accept what a cashier types.
fn normalize_code(code: &str) -> DomainResult<String> {
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(DomainError::validation(format!(
            "code must be 1–{MAX_CODE_LEN} characters"
        )));
    }
    Ok(code)
}

impl Loyalty {
    /// Turns the calling member's points into a voucher worth `points ÷ pointsPerCurrency`,
    /// debiting them (purpose `discount`) in the same transaction, once per idempotency key.
    pub async fn redeem_discount(
        &self,
        actor: &MemberActor,
        points: Decimal,
        idempotency_key: &str,
    ) -> DomainResult<DiscountOutcome> {
        let points = Points::parse(points, "points")?;
        if !points.is_positive() {
            return Err(DomainError::validation("points must be positive"));
        }
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        voucher_value(points, &program)?;
        let op = RedeemDiscountOp {
            points,
            member: MemberRef::External(actor.subject.clone()),
            key,
        };
        self.execute(&program, &op).await
    }

    /// The calling member's vouchers, newest first (`before_id`: the cursor).
    pub async fn my_vouchers(
        &self,
        actor: &MemberActor,
        first: u64,
        before_id: Option<i64>,
    ) -> DomainResult<(Vec<Voucher>, bool)> {
        let program = self.program(&actor.program).await?;
        let Some(member) = self.find_member(&program, &actor.subject).await? else {
            return Ok((Vec::new(), false));
        };
        let first = first.clamp(1, MAX_PAGE);
        let mut query = vouchers::Entity::find()
            .filter(vouchers::Column::ProgramId.eq(program.id))
            .filter(vouchers::Column::MemberId.eq(member.id))
            .order_by_desc(vouchers::Column::Id)
            .limit(first + 1);
        if let Some(before) = before_id {
            query = query.filter(vouchers::Column::Id.lt(before));
        }
        let mut rows = query.all(self.db()).await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let now = self.now();
        let vouchers = rows
            .into_iter()
            .map(|row| Voucher::from_model(row, &program, now))
            .collect::<DomainResult<_>>()?;
        Ok((vouchers, has_next))
    }

    /// Checkout (service token): marks an active, unexpired voucher used for `order_id`. One
    /// conditional update decides, so of any number of calls exactly one succeeds; the others
    /// get `ALREADY_CLAIMED`. Expired → `VALIDATION`; unknown (or another program's) → `NOT_FOUND`.
    pub async fn consume_voucher(
        &self,
        actor: &ServiceActor,
        code: &str,
        order_id: &str,
    ) -> DomainResult<Voucher> {
        let code = normalize_code(code)?;
        let order_id = order_id.trim();
        if order_id.is_empty() || order_id.len() > MAX_ORDER_ID_LEN {
            return Err(DomainError::validation(format!(
                "orderId must be 1–{MAX_ORDER_ID_LEN} characters"
            )));
        }
        let program = self.program(&actor.program).await?;
        let now = self.now();
        // The use is also written as a row of its own, in the same transaction: the report
        // folds those (a voucher row changes in place, which its watermark cannot follow).
        let used = {
            let (loyalty, used_in, code, order_id) = (
                self.clone(),
                program.clone(),
                code.clone(),
                order_id.to_owned(),
            );
            run_detached(async move {
                retry("consume_voucher", || {
                    use_voucher(&loyalty, &used_in, &code, &order_id, now)
                })
                .await
            })
            .await?
        };
        if let Some((row, event)) = used {
            if event {
                self.webhooks().wake();
            }
            return Voucher::from_model(row, &program, now);
        }
        let row = vouchers::Entity::find()
            .filter(vouchers::Column::ProgramId.eq(program.id))
            .filter(vouchers::Column::Code.eq(code.as_str()))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("voucher `{code}` not found")))?;
        let voucher = Voucher::from_model(row, &program, now)?;
        Err(match voucher.status {
            VoucherStatus::Used => DomainError::AlreadyClaimed(format!(
                "voucher `{code}` was already used{}",
                voucher
                    .used_at
                    .map(|at| format!(" at {}", at.to_rfc3339()))
                    .unwrap_or_default()
            )),
            VoucherStatus::Expired => DomainError::validation(format!(
                "voucher `{code}` expired at {}",
                voucher.expires_at.to_rfc3339()
            )),
            VoucherStatus::Active => {
                DomainError::Conflict(format!("voucher `{code}` changed; try again"))
            }
        })
    }
}

/// Marks an active, unexpired voucher used and writes its use and its `voucher.consumed`
/// webhook event, in one transaction; `None` when no such voucher was there to use, else the
/// voucher and whether an event was written.
async fn use_voucher(
    loyalty: &Loyalty,
    program: &Program,
    code: &str,
    order_id: &str,
    now: DateTime<Utc>,
) -> TxResult<Option<(vouchers::Model, bool)>> {
    let program_id = program.id;
    let txn = loyalty.db().begin().await?;
    let used = vouchers::Entity::update_many()
        .col_expr(
            vouchers::Column::Status,
            Expr::value(StoredStatus::Used.as_str()),
        )
        .col_expr(vouchers::Column::UsedAt, Expr::value(Some(now)))
        .col_expr(vouchers::Column::OrderId, Expr::value(Some(order_id)))
        .filter(vouchers::Column::ProgramId.eq(program_id))
        .filter(vouchers::Column::Code.eq(code))
        .filter(vouchers::Column::Status.eq(StoredStatus::Active.as_str()))
        .filter(vouchers::Column::ExpiresAt.gt(now))
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .next();
    if let Some(row) = &used {
        txn.execute(stmt(
            txn.get_database_backend(),
            "INSERT INTO voucher_uses (program_id, voucher_id, member_id, origin, value_minor, \
             order_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                row.program_id.into(),
                row.id.into(),
                row.member_id.into(),
                row.origin.clone().into(),
                row.value_minor.into(),
                order_id.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    let mut event = false;
    if let Some(row) = &used {
        let object = serde_json::json!({
            "id": row.id.to_string(),
            "orderId": order_id,
            "points": Points::from_minor(row.points_minor).to_string(),
            "value": Money::from_minor(row.value_minor).decimal().to_string(),
            "currency": program.currency,
            "origin": row.origin,
        });
        event = loyalty
            .write_member_event(
                &txn,
                program,
                crate::webhooks::EventType::VoucherConsumed,
                format!("evt_voucher_{}_consumed", row.id),
                row.member_id,
                ("voucher", object),
            )
            .await?;
    }
    txn.commit().await?;
    Ok(used.map(|row| (row, event)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn program(ratio: Decimal) -> Program {
        Program {
            id: 1,
            external_id: "p".into(),
            name: "P".into(),
            tz: chrono_tz::UTC,
            currency: "USD".into(),
            points_per_currency: ratio,
            validity_days: None,
            referral_link_template: None,
            referrals: crate::program::ReferralPolicy {
                on_first_purchase: false,
                daily_cap: None,
                lifetime_cap: None,
            },
        }
    }

    fn value(points: Decimal, ratio: Decimal) -> DomainResult<Decimal> {
        voucher_value(Points::parse(points, "p")?, &program(ratio)).map(Money::decimal)
    }

    #[test]
    fn value_is_points_over_ratio_rounded_half_to_even() {
        assert_eq!(value(dec!(10), dec!(10)).unwrap(), dec!(1.00));
        assert_eq!(value(dec!(0.15), dec!(10)).unwrap(), dec!(0.02));
        assert_eq!(value(dec!(0.25), dec!(10)).unwrap(), dec!(0.02));
        assert_eq!(value(dec!(100), dec!(3)).unwrap(), dec!(33.33));
        assert_eq!(value(dec!(7), dec!(0.5)).unwrap(), dec!(14.00));
    }

    #[test]
    fn less_than_a_cent_is_refused() {
        assert!(matches!(
            value(dec!(0.05), dec!(10)),
            Err(DomainError::Validation(_))
        ));
    }

    #[test]
    fn codes_are_long_and_unambiguous() {
        for _ in 0..1_000 {
            let code = new_voucher_code().unwrap();
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
        }
        assert_eq!(CODE_ALPHABET.len(), 31);
        assert!(!CODE_ALPHABET.iter().any(|b| b"01ILO".contains(b)));
    }

    #[test]
    fn rejection_sampling_has_no_modulo_bias() {
        // Every byte value once: the accepted ones cover each symbol exactly 8 times.
        let bytes: Vec<u8> = (0..=255).collect();
        let mut counts = [0usize; 31];
        for chunk in bytes.chunks(CODE_LEN) {
            let mut code = String::new();
            push_symbols(&mut code, chunk);
            for b in code.bytes() {
                if let Some(i) = CODE_ALPHABET.iter().position(|s| *s == b) {
                    counts[i] += 1;
                }
            }
        }
        assert!(counts.iter().all(|&c| c == 8), "{counts:?}");
        let mut code = String::new();
        push_symbols(&mut code, &[248, 255, 0]);
        assert_eq!(code, "2");
    }

    #[test]
    fn codes_are_normalised() {
        assert_eq!(normalize_code(" abcd-efgh ").unwrap(), "ABCDEFGH");
        assert!(normalize_code("  ").is_err());
    }
}

#[cfg(test)]
mod prize_tests {
    use super::*;
    use crate::spending::gifts::test_support::{demo, Prize, PrizeOp, Won};

    #[tokio::test]
    async fn a_won_voucher_costs_no_points() {
        let (loyalty, program, member_id) = demo().await;
        let win = PrizeOp {
            member_id,
            prize: Prize::Voucher(Points::from_minor(2_500)),
        };
        let Won::Voucher(voucher) = loyalty.execute(&program, &win).await.unwrap() else {
            panic!("a voucher prize grants a voucher");
        };
        // The demo program gives 1 USD per 10 points.
        assert_eq!(voucher.value, Money::from_minor(250));
        assert_eq!(voucher.currency, "USD");
        assert_eq!(voucher.origin, VoucherOrigin::Wheel);
        assert_eq!(voucher.status, VoucherStatus::Active);
        assert_eq!(voucher.code.len(), CODE_LEN);
        let member = loyalty.member(&program, member_id).await.unwrap();
        assert_eq!(member.balance, Points::from_minor(7_000));
        let worthless = PrizeOp {
            member_id,
            prize: Prize::Voucher(Points::from_minor(4)),
        };
        assert!(matches!(
            loyalty.execute(&program, &worthless).await,
            Err(DomainError::Validation(_))
        ));
    }
}
