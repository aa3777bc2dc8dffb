//! Posting primitives. Every balance change is a ledger row plus the matching balance update in
//! the same transaction, under the member's lock. Positive POINTS postings are lots that expire
//! after the program's validity period; negative postings consume lots first-expiring-first, so
//! for every member `SUM(remaining of lots) == balance` holds alongside `balance == SUM(amount)`.
//! SPINS counts free wheel spins ([`ONE_SPIN`] each): never lots, never expiring, never points.
//!
//! The ledger is the bottom of the domain crate: it imports nothing above it (no service, no
//! program tiers, no rules, no live events). Operations decide what to post and hand it down;
//! what the layer above adds to every transaction (tier placement, after-commit work, the fast
//! path) comes in through [`ops::Host`]. A [`Tx`] is opened only here, by [`ops::execute`].
//! `tests.rs` pins both.

mod affinity;
pub mod audit;
pub mod batch;
pub mod db;
pub mod expiry;
pub mod ops;
pub(crate) mod settled;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use loyalty_entities::{balances, ledger_entries, members};
use sea_orm::sea_query::{Expr, OnConflict, Order};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QueryTrait,
    Statement,
};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ledger::db::{classify, DbErrorKind, TxError, TxResult};
use crate::money::Points;
use crate::stored::{stored_enum, Stored};
use crate::tenant::Program;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Account {
    Points,
    Qualification,
    /// Free wheel spins (campaign `FreeSpins` rewards), [`ONE_SPIN`] per spin. Spent by
    /// `spinWheel` before points; never expires and is never counted as points (report,
    /// leaderboards, tiers).
    Spins,
}

stored_enum!(Account {
    Points => "POINTS",
    Qualification => "QUALIFICATION",
    Spins => "SPINS",
});

/// One free spin on the SPINS account.
pub const ONE_SPIN: Points = Points::from_minor(100);

impl Account {
    /// Whether a balance row may be missing until the first posting (SPINS: members that
    /// joined before the account existed, and members who never got a spin, have none).
    fn created_on_first_credit(self) -> bool {
        match self {
            Account::Points | Account::Qualification => false,
            Account::Spins => true,
        }
    }
}

/// A SPINS amount as a number of spins (whole spins only are ever posted).
pub fn spins_of(amount: Points) -> u32 {
    u32::try_from(amount.minor() / ONE_SPIN.minor()).unwrap_or(u32::MAX)
}

/// `spins` free spins as a SPINS amount.
pub fn spins_amount(spins: u32) -> Points {
    Points::from_minor(i64::from(spins) * ONE_SPIN.minor())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Earn,
    Spend,
    Expire,
    Refund,
    Reversal,
    Adjust,
}

stored_enum!(Kind {
    Earn => "EARN",
    Spend => "SPEND",
    Expire => "EXPIRE",
    Refund => "REFUND",
    Reversal => "REVERSAL",
    Adjust => "ADJUST",
});

/// A ledger row as the domain returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub id: i64,
    pub member_id: i64,
    pub account: Account,
    pub amount: Points,
    pub kind: Kind,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub rule_id: Option<i64>,
    pub ruleset_version: Option<i64>,
    pub member_version: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The account's balance right after this row, when the posting was just made (live
    /// events carry it); `None` for rows read back from the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<Points>,
}

impl TryFrom<ledger_entries::Model> for Posting {
    type Error = DomainError;

    fn try_from(m: ledger_entries::Model) -> Result<Self, DomainError> {
        Ok(Posting {
            id: m.id,
            member_id: m.member_id,
            account: Account::read("ledger_entries.account", &m.account)?,
            amount: Points::from_minor(m.amount_minor),
            kind: Kind::read("ledger_entries.kind", &m.kind)?,
            source: m.source,
            purpose: m.purpose,
            ref_type: m.ref_type,
            ref_id: m.ref_id,
            rule_id: m.rule_id,
            ruleset_version: m.ruleset_version,
            member_version: m.member_version,
            expires_at: m.expires_at,
            note: m.note,
            created_at: m.created_at,
            balance_after: None,
        })
    }
}

/// What to post. `amount` is always positive; the kind decides the sign.
#[derive(Clone, Debug)]
pub struct Entry {
    pub account: Account,
    pub amount: Points,
    pub kind: Kind,
    /// Earn source or spend purpose (the report key).
    pub label: Option<String>,
    pub reference: Option<(String, String)>,
    pub rule: Option<(i64, i64)>,
    pub key: Option<String>,
    pub reverses: Option<i64>,
    pub note: Option<String>,
}

impl Entry {
    pub fn new(account: Account, kind: Kind, amount: Points) -> Entry {
        Entry {
            account,
            amount,
            kind,
            label: None,
            reference: None,
            rule: None,
            key: None,
            reverses: None,
            note: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn reference(mut self, kind: &str, id: impl Into<String>) -> Self {
        self.reference = Some((kind.to_owned(), id.into()));
        self
    }

    pub fn key(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A value the layer above leaves on a transaction for after its commit, of a type the ledger
/// does not know.
pub type Note = Box<dyn std::any::Any + Send + Sync>;

/// The notes of type `T`, in the order they were left.
pub fn notes_of<T: 'static>(notes: &[Note]) -> impl Iterator<Item = &T> {
    notes.iter().filter_map(|note| note.downcast_ref::<T>())
}

/// One balance-changing transaction in progress: the locked member, the clock reading and
/// everything posted so far (published as events after commit).
pub struct Tx<'a> {
    pub txn: &'a DatabaseTransaction,
    pub program: &'a Program,
    pub member: members::Model,
    pub now: DateTime<Utc>,
    pub posted: Vec<Posting>,
    /// Opaque notes the layer above handles after commit, dropped with a rollback: live events
    /// that are not postings (challenge progress), cross-member work queued (`work.rs`). The
    /// ledger only carries them; each consumer picks its own type ([`notes_of`]).
    pub notes: Vec<Note>,
    /// The program's live ruleset version, read with the member's lock.
    pub live_version: i64,
    /// The program's live challenge set version, read with the member's lock.
    pub challenge_version: i64,
    /// The member's posting counter: every ledger row takes the next value.
    pub version: i64,
    /// The member's tier earn multiplier in hundredths, as of the lock.
    pub multiplier_minor: i64,
    /// The member's tier as of the lock (the tier it left, when this transaction moved it).
    pub tier_at_lock: Option<i64>,
    qualification_changed: bool,
    member_dirty: bool,
    /// Balances read or written in this transaction (the member is locked, so they are current).
    balances: Vec<(Account, i64)>,
    /// Writes nothing in the posting reads back ([`Tx::write_later`]), sent on PostgreSQL with
    /// the posting's last statement.
    deferred: Vec<(&'static str, Statement)>,
    /// The earn history read with the lock, with the posting counter it was read at.
    history: Option<(
        crate::ledger::db::HistoryQuery,
        i64,
        Vec<crate::ledger::db::RuleHistory>,
    )>,
}

impl<'a> Tx<'a> {
    /// Private to the ledger: a transaction is opened by [`ops::execute`], so every balance
    /// change runs the one skeleton, on exactly one member.
    fn new(
        txn: &'a DatabaseTransaction,
        program: &'a Program,
        locked: crate::ledger::db::Locked,
        now: DateTime<Utc>,
    ) -> Self {
        Tx {
            txn,
            program,
            tier_at_lock: locked.member.tier_id,
            member: locked.member,
            now,
            posted: Vec::new(),
            notes: Vec::new(),
            live_version: locked.live_version,
            challenge_version: locked.challenge_version,
            version: locked.version,
            multiplier_minor: locked.multiplier_minor,
            qualification_changed: false,
            member_dirty: false,
            balances: vec![(Account::Points, locked.points_minor)],
            deferred: Vec::new(),
            history: locked
                .history
                .map(|(query, rows)| (query, locked.version, rows)),
        }
    }

    /// The earn history read with the member's lock, once, if it answers `query` (the caller
    /// names the ruleset version it read with the lock) and is still current (nothing posted
    /// since the lock); `None` otherwise: the caller reads it itself.
    pub fn take_history(
        &mut self,
        query: &crate::ledger::db::HistoryQuery,
    ) -> Option<Vec<crate::ledger::db::RuleHistory>> {
        match self.history.take() {
            Some((asked, version, rows)) if asked == *query && version == self.version => {
                Some(rows)
            }
            _ => None,
        }
    }

    /// Marks the member row as changed (streak, registration) so it is written at the end.
    pub fn touch_member(&mut self) {
        self.member_dirty = true;
    }

    /// Whether the QUALIFICATION balance moved since the member was last placed in a tier:
    /// the layer above then calls [`Tx::place_in_tier`] before the member row is written.
    pub fn qualification_changed(&self) -> bool {
        self.qualification_changed
    }

    /// Puts the member in `tier` (decided above the ledger, from the qualification balance).
    pub fn place_in_tier(&mut self, tier: Option<i64>) {
        if tier != self.member.tier_id {
            self.member.tier_id = tier;
            self.member_dirty = true;
        }
        self.qualification_changed = false;
    }

    /// Writes the member row if it changed (one statement, only when needed).
    pub async fn flush_member(&mut self) -> TxResult<()> {
        debug_assert!(
            !self.qualification_changed,
            "qualification moved but the member was not placed in a tier"
        );
        if !self.member_dirty {
            return Ok(());
        }
        let m = &self.member;
        let update = members::Entity::update_many()
            .col_expr(members::Column::LoginStreak, Expr::value(m.login_streak))
            .col_expr(members::Column::TierId, Expr::value(m.tier_id))
            .col_expr(members::Column::ReferrerId, Expr::value(m.referrer_id))
            .col_expr(
                members::Column::LastLoginDate,
                Expr::value(m.last_login_date.clone()),
            )
            .col_expr(members::Column::RegisteredAt, Expr::value(m.registered_at))
            .col_expr(
                members::Column::DisplayName,
                Expr::value(m.display_name.clone()),
            )
            .filter(members::Column::Id.eq(m.id))
            .build(self.txn.get_database_backend());
        self.write_later("members", update).await?;
        self.member_dirty = false;
        Ok(())
    }

    /// A write to `table` whose result nothing in this posting reads (the member row, the earn
    /// event): on PostgreSQL it is sent with the posting's last statement (the idempotency
    /// claim, or the last such write) as a data-modifying `WITH` part, so a posting's trailing
    /// writes cost one round trip; on SQLite, where a statement costs no round trip, it runs
    /// now. Either way it commits or rolls back with the posting. The parts of one statement
    /// run in no set order, so a second write to the same table sends the first one now: rows
    /// keep the order (and ids) in which they were written. A later read of the rows
    /// written, in the same posting, needs [`Tx::flush`] first.
    pub async fn write_later(&mut self, table: &'static str, statement: Statement) -> TxResult<()> {
        match self.txn.get_database_backend() {
            DatabaseBackend::Postgres => {
                self.flush(table).await?;
                self.deferred.push((table, statement));
            }
            DatabaseBackend::Sqlite | DatabaseBackend::MySql => {
                self.txn.execute(statement).await?;
            }
        }
        Ok(())
    }

    /// Sends the deferred write to `table` now, if there is one: a posting that reads a table
    /// it may have written with [`Tx::write_later`] (one transaction can carry several events,
    /// and a later one reads what an earlier one wrote) calls this before the read.
    pub async fn flush(&mut self, table: &'static str) -> TxResult<()> {
        if let Some(at) = self.deferred.iter().position(|(t, _)| *t == table) {
            let (_, statement) = self.deferred.remove(at);
            self.txn.execute(statement).await?;
        }
        Ok(())
    }

    /// The deferred writes, for the skeleton to send with the posting's last statement.
    pub(crate) fn take_deferred(&mut self) -> Vec<Statement> {
        std::mem::take(&mut self.deferred)
            .into_iter()
            .map(|(_, statement)| statement)
            .collect()
    }

    pub async fn balance(&mut self, account: Account) -> TxResult<Points> {
        if let Some((_, minor)) = self.balances.iter().find(|(a, _)| *a == account) {
            return Ok(Points::from_minor(*minor));
        }
        let row = balances::Entity::find()
            .filter(balances::Column::MemberId.eq(self.member.id))
            .filter(balances::Column::Account.eq(account.as_str()))
            .one(self.txn)
            .await?;
        let minor = row.map(|b| b.balance_minor).unwrap_or_default();
        self.balances.push((account, minor));
        Ok(Points::from_minor(minor))
    }

    /// Posts a positive amount (earn, refund, positive adjustment). POINTS credits are lots.
    pub async fn credit(&mut self, entry: Entry) -> TxResult<Posting> {
        debug_assert!(entry.amount.is_positive());
        let amount = entry.amount.minor();
        let earned = if entry.kind == Kind::Earn { amount } else { 0 };
        let lot = entry.account == Account::Points;
        let expires_at = self
            .program
            .validity_days
            .filter(|_| lot)
            .map(|days| self.now + Duration::days(i64::from(days)));
        let movement = Movement {
            delta: amount,
            earned,
            spent: 0,
        };
        self.post(entry, movement, expires_at, lot.then_some(amount))
            .await
    }

    /// Posts a negative amount (spend, reversal, expiry, negative adjustment), consuming lots
    /// first-expiring-first. With `partial`, takes what the balance allows (possibly nothing:
    /// then `Ok(None)`); otherwise refuses with `INSUFFICIENT_POINTS`.
    pub async fn debit(
        &mut self,
        entry: Entry,
        partial: bool,
        prefer_lots: &[i64],
    ) -> TxResult<Option<Posting>> {
        let wanted = entry.amount.minor();
        let available = self.balance(entry.account).await?.minor();
        let amount = if partial {
            wanted.min(available)
        } else {
            wanted
        };
        if amount > available {
            return Err(TxError::Domain(DomainError::InsufficientPoints(format!(
                "balance {} is less than {}",
                Points::from_minor(available),
                entry.amount
            ))));
        }
        if amount <= 0 {
            return Ok(None);
        }
        let spent = if entry.kind == Kind::Spend { amount } else { 0 };
        // The balance read above is current (the member is locked), so the lots cover it.
        if entry.account == Account::Points {
            self.consume_lots(amount, prefer_lots).await?;
        }
        let movement = Movement {
            delta: -amount,
            earned: 0,
            spent,
        };
        self.post(entry, movement, None, None).await.map(Some)
    }

    /// Debits the whole amount or refuses (`INSUFFICIENT_POINTS`): a spend, a reversal or a
    /// negative adjustment that must post exactly what it says.
    pub async fn debit_in_full(&mut self, entry: Entry) -> TxResult<Posting> {
        let kind = entry.kind;
        self.debit(entry, false, &[]).await?.ok_or_else(|| {
            TxError::Domain(DomainError::internal(format!(
                "empty {} debit",
                kind.as_str()
            )))
        })
    }

    /// Writes one ledger row and moves its account's balance projection by the same amount:
    /// one statement on PostgreSQL (a data-modifying `WITH`), two on SQLite (in process, where
    /// a statement costs no round trip).
    async fn post(
        &mut self,
        entry: Entry,
        movement: Movement,
        expires_at: Option<DateTime<Utc>>,
        remaining: Option<i64>,
    ) -> TxResult<Posting> {
        let account = entry.account;
        let row = self.ledger_row(entry, movement.delta, expires_at, remaining);
        let mut written = self.write(account, movement, &row).await;
        // The member is locked: nobody else creates this row meanwhile.
        if matches!(written, Ok(None)) && movement.delta > 0 && account.created_on_first_credit() {
            self.create_balance(account).await?;
            written = self.write(account, movement, &row).await;
        }
        let written = match written {
            Ok(Some(written)) => written,
            Ok(None) => {
                return Err(TxError::Domain(DomainError::internal(
                    "balance row missing",
                )))
            }
            Err(err) => {
                return Err(match classify(&err) {
                    DbErrorKind::CheckViolation => TxError::Domain(
                        DomainError::InsufficientPoints("balance would go below zero".into()),
                    ),
                    // The ledger's unique key is the backstop of every one-off reward.
                    DbErrorKind::UniqueViolation => TxError::Domain(DomainError::AlreadyClaimed(
                        "this reward was already posted".into(),
                    )),
                    DbErrorKind::Retryable | DbErrorKind::Other => TxError::Db(err),
                });
            }
        };
        within_bound(account, &written.totals, movement)?;
        self.version += 1;
        // The cached balance must follow every write, or later checks in this transaction
        // would read a stale figure.
        self.balances.retain(|(a, _)| *a != account);
        self.balances.push((account, written.totals.balance));
        if account == Account::Qualification {
            self.qualification_changed = true;
        }
        let mut posting = Posting::try_from(written.entry)?;
        posting.balance_after = Some(Points::from_minor(written.totals.balance));
        metrics::counter!("loyalty_postings_total", "kind" => posting.kind.as_str()).increment(1);
        self.posted.push(posting.clone());
        Ok(posting)
    }

    /// The ledger row of `entry` as the next posting of this member.
    fn ledger_row(
        &self,
        entry: Entry,
        amount: i64,
        expires_at: Option<DateTime<Utc>>,
        remaining: Option<i64>,
    ) -> ledger_entries::ActiveModel {
        // Earns and their reversals carry a source; spends, their refunds and expiries a
        // purpose, so a report nets each correction out of what it corrects.
        let is_earn_like = match entry.kind {
            Kind::Earn | Kind::Reversal => true,
            Kind::Adjust => amount > 0,
            Kind::Spend | Kind::Refund | Kind::Expire => false,
        };
        let label = entry.label;
        let (ref_type, ref_id) = entry.reference.unzip();
        let (rule_id, ruleset_version) = entry.rule.unzip();
        ledger_entries::ActiveModel {
            program_id: Set(self.program.id),
            member_id: Set(self.member.id),
            account: Set(entry.account.as_str().to_owned()),
            amount_minor: Set(amount),
            kind: Set(entry.kind.as_str().to_owned()),
            source: Set(if is_earn_like { label.clone() } else { None }),
            purpose: Set(if is_earn_like { None } else { label }),
            ref_type: Set(ref_type),
            ref_id: Set(ref_id),
            rule_id: Set(rule_id),
            ruleset_version: Set(ruleset_version),
            idempotency_key: Set(entry.key),
            reverses_id: Set(entry.reverses),
            expires_at: Set(expires_at),
            remaining_minor: Set(remaining),
            member_version: Set(self.version + 1),
            note: Set(entry.note),
            created_at: Set(self.now),
            ..Default::default()
        }
    }

    /// The row and the balance move; `None` when the account has no balance row yet.
    async fn write(
        &self,
        account: Account,
        movement: Movement,
        row: &ledger_entries::ActiveModel,
    ) -> Result<Option<Written>, sea_orm::DbErr> {
        match self.txn.get_database_backend() {
            DatabaseBackend::Postgres | DatabaseBackend::MySql => {
                self.write_in_one(account, movement, row).await
            }
            DatabaseBackend::Sqlite => self.write_in_two(account, movement, row).await,
        }
    }

    async fn write_in_one(
        &self,
        account: Account,
        movement: Movement,
        row: &ledger_entries::ActiveModel,
    ) -> Result<Option<Written>, sea_orm::DbErr> {
        let columns = LEDGER_COLUMNS
            .iter()
            .map(|c| match row.get(*c) {
                Set(value) | sea_orm::ActiveValue::Unchanged(value) => Ok(value),
                sea_orm::ActiveValue::NotSet => {
                    Err(sea_orm::DbErr::Custom(format!("ledger column {c:?} unset")))
                }
            })
            .collect::<Result<Vec<sea_orm::Value>, _>>()?;
        let mut values: Vec<sea_orm::Value> = vec![
            movement.delta.into(),
            movement.earned.into(),
            movement.spent.into(),
            self.now.into(),
            self.member.id.into(),
            account.as_str().into(),
        ];
        values.extend(columns);
        let found = self
            .txn
            .query_one(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                write_in_one_sql(),
                values,
            ))
            .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        Ok(Some(Written {
            entry: ledger_entries::Model::from_query_result(&found, "")?,
            totals: Totals {
                balance: found.try_get("", "balance_after")?,
                earned: found.try_get("", "earned_after")?,
                spent: found.try_get("", "spent_after")?,
            },
        }))
    }

    async fn write_in_two(
        &self,
        account: Account,
        movement: Movement,
        row: &ledger_entries::ActiveModel,
    ) -> Result<Option<Written>, sea_orm::DbErr> {
        let updated = balances::Entity::update_many()
            .col_expr(
                balances::Column::BalanceMinor,
                Expr::col(balances::Column::BalanceMinor).add(movement.delta),
            )
            .col_expr(
                balances::Column::EarnedMinor,
                Expr::col(balances::Column::EarnedMinor).add(movement.earned),
            )
            .col_expr(
                balances::Column::SpentMinor,
                Expr::col(balances::Column::SpentMinor).add(movement.spent),
            )
            .col_expr(balances::Column::UpdatedAt, Expr::value(self.now))
            .filter(balances::Column::MemberId.eq(self.member.id))
            .filter(balances::Column::Account.eq(account.as_str()))
            .exec_with_returning(self.txn)
            .await?;
        let Some(balance) = updated.into_iter().next() else {
            return Ok(None);
        };
        let entry = ledger_entries::Entity::insert(row.clone())
            .exec_with_returning(self.txn)
            .await?;
        Ok(Some(Written {
            entry,
            totals: Totals {
                balance: balance.balance_minor,
                earned: balance.earned_minor,
                spent: balance.spent_minor,
            },
        }))
    }

    /// The zero balance row of an account created on its first credit (SPINS).
    async fn create_balance(&self, account: Account) -> TxResult<()> {
        balances::Entity::insert(balances::ActiveModel {
            program_id: Set(self.program.id),
            member_id: Set(self.member.id),
            account: Set(account.as_str().to_owned()),
            balance_minor: Set(0),
            earned_minor: Set(0),
            spent_minor: Set(0),
            updated_at: Set(self.now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([balances::Column::MemberId, balances::Column::Account])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.txn)
        .await?;
        Ok(())
    }

    async fn consume_lots(&self, amount: i64, prefer: &[i64]) -> TxResult<()> {
        let mut lots = ledger_entries::Entity::find()
            .filter(ledger_entries::Column::MemberId.eq(self.member.id))
            .filter(ledger_entries::Column::Account.eq(Account::Points.as_str()))
            .filter(ledger_entries::Column::RemainingMinor.gt(0))
            .order_by(
                Expr::col(ledger_entries::Column::ExpiresAt).is_null(),
                Order::Asc,
            )
            .order_by_asc(ledger_entries::Column::ExpiresAt)
            .order_by_asc(ledger_entries::Column::Id)
            .all(self.txn)
            .await?;
        lots.sort_by_key(|lot| !prefer.contains(&lot.id));
        let mut left = amount;
        for lot in lots {
            if left == 0 {
                break;
            }
            let remaining = lot.remaining_minor.unwrap_or_default();
            let take = remaining.min(left);
            ledger_entries::Entity::update_many()
                .col_expr(
                    ledger_entries::Column::RemainingMinor,
                    Expr::value(remaining - take),
                )
                .filter(ledger_entries::Column::Id.eq(lot.id))
                .exec(self.txn)
                .await?;
            left -= take;
        }
        if left != 0 {
            return Err(TxError::Domain(DomainError::internal(format!(
                "lots of member {} cover {} less than the balance",
                self.member.id,
                Points::from_minor(left)
            ))));
        }
        Ok(())
    }
}

/// Refuses a posting that takes a balance or a lifetime total (earned, spent) past
/// [`Points::MAX`]; the transaction then rolls back, so nothing is posted. Checked on the row
/// the update returns: the total before and the amount are each within the bound, so their
/// sum cannot overflow on either backend.
fn within_bound(account: Account, totals: &Totals, movement: Movement) -> TxResult<()> {
    let max = Points::MAX.minor();
    let what = if movement.delta > 0 && totals.balance > max {
        "balance"
    } else if movement.earned > 0 && totals.earned > max {
        "lifetime earned total"
    } else if movement.spent > 0 && totals.spent > max {
        "lifetime spent total"
    } else {
        return Ok(());
    };
    Err(TxError::Domain(DomainError::validation(format!(
        "this would take the {} {what} past the maximum of {} points",
        account.as_str(),
        Points::MAX
    ))))
}

/// How one posting moves its account's balance row.
#[derive(Clone, Copy, Debug)]
struct Movement {
    delta: i64,
    earned: i64,
    spent: i64,
}

/// A balance row's figures right after a posting.
struct Totals {
    balance: i64,
    earned: i64,
    spent: i64,
}

/// A ledger row as written, with its balance row's figures after it.
struct Written {
    entry: ledger_entries::Model,
    totals: Totals,
}

/// The ledger row's columns the one-statement write sets, in order.
const LEDGER_COLUMNS: [ledger_entries::Column; 17] = [
    ledger_entries::Column::ProgramId,
    ledger_entries::Column::MemberId,
    ledger_entries::Column::Account,
    ledger_entries::Column::AmountMinor,
    ledger_entries::Column::Kind,
    ledger_entries::Column::Source,
    ledger_entries::Column::Purpose,
    ledger_entries::Column::RefType,
    ledger_entries::Column::RefId,
    ledger_entries::Column::RuleId,
    ledger_entries::Column::RulesetVersion,
    ledger_entries::Column::IdempotencyKey,
    ledger_entries::Column::ReversesId,
    ledger_entries::Column::ExpiresAt,
    ledger_entries::Column::RemainingMinor,
    ledger_entries::Column::MemberVersion,
    ledger_entries::Column::Note,
];

/// The balance move and the ledger row in one PostgreSQL statement: `$1`–`$6` move the balance
/// (delta, earned, spent, now, member, account), `$7`… are [`LEDGER_COLUMNS`]; the row's
/// `created_at` is `$4`. No balance row: no ledger row, and no result.
fn write_in_one_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        use sea_orm::Iden;
        let names: Vec<String> = LEDGER_COLUMNS.iter().map(|c| c.to_string()).collect();
        let params: Vec<String> = (0..LEDGER_COLUMNS.len())
            .map(|n| format!("${}", n + 7))
            .collect();
        format!(
            "WITH b AS (UPDATE balances SET balance_minor = balance_minor + $1, \
             earned_minor = earned_minor + $2, spent_minor = spent_minor + $3, updated_at = $4 \
             WHERE member_id = $5 AND account = $6 \
             RETURNING balance_minor, earned_minor, spent_minor), \
             l AS (INSERT INTO ledger_entries ({}, created_at) SELECT {}, $4 FROM b RETURNING *) \
             SELECT l.*, b.balance_minor AS balance_after, b.earned_minor AS earned_after, \
             b.spent_minor AS spent_after FROM l, b",
            names.join(", "),
            params.join(", ")
        )
    })
}
