//! Tiers: levels by qualification balance, each with an earn multiplier. A member is always in
//! the highest tier whose threshold their QUALIFICATION balance reaches. Qualification points
//! are never spent, so members move down only when qualification is reversed (a refunded
//! purchase) or when an admin raises a threshold; both re-place them at once.
//!
//! Each instance keeps every program's ladder (its thresholds, lowest first) in a [`TierCache`]
//! so a posting places its member without reading `tiers`. A tier change drops the ladder
//! like a change of program settings: at once on the instance that made it, through the bus
//! (`program.changed`) on the others, and after `PROGRAM_CACHE_TTL` at the latest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use loyalty_entities::{members, tiers};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{classify, run_detached, DbErrorKind, TxResult};
use crate::ledger::{Account, Tx};
use crate::money::Points;
use crate::program::Program;
use crate::service::{Loyalty, PROGRAM_CACHE_TTL};

pub const MAX_TIERS: u64 = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub id: i64,
    pub name: String,
    pub min_qualification: Points,
    /// Earn multiplier (1.00 = no bonus).
    pub multiplier: Decimal,
}

impl From<tiers::Model> for Tier {
    fn from(m: tiers::Model) -> Self {
        Tier {
            id: m.id,
            name: m.name,
            min_qualification: Points::from_minor(m.min_qualification_minor),
            multiplier: Points::from_minor(m.multiplier_minor).decimal(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TierInput {
    pub name: String,
    pub min_qualification: Decimal,
    pub multiplier: Decimal,
}

/// The tier a qualification balance reaches (highest threshold at or below it).
pub(crate) async fn tier_for<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    qualification: Points,
) -> Result<Option<i64>, sea_orm::DbErr> {
    Ok(tiers::Entity::find()
        .filter(tiers::Column::ProgramId.eq(program_id))
        .filter(tiers::Column::MinQualificationMinor.lte(qualification.minor()))
        .order_by_desc(tiers::Column::MinQualificationMinor)
        .one(conn)
        .await?
        .map(|t| t.id))
}

/// The tier a qualification balance reaches on `ladder` (lowest first): the same answer as
/// [`tier_for`] reads.
fn reached(ladder: &[Tier], qualification: Points) -> Option<i64> {
    ladder
        .iter()
        .rev()
        .find(|tier| tier.min_qualification <= qualification)
        .map(|tier| tier.id)
}

/// A program's tiers, lowest first.
type Ladder = Arc<[Tier]>;

/// One instance's tier ladders by program id, with when each was read.
#[derive(Default)]
pub(crate) struct TierCache {
    ladders: RwLock<HashMap<i64, (Ladder, Instant)>>,
    /// Moves on every forget: a ladder read before a change is never stored after it (a
    /// posting that read the old tiers just before an admin's commit would otherwise put them
    /// back for a whole TTL).
    generation: AtomicU64,
}

impl TierCache {
    fn get(&self, program_id: i64) -> Option<Ladder> {
        let ladders = self.ladders.read().ok()?;
        let (ladder, read_at) = ladders.get(&program_id)?;
        (read_at.elapsed() < PROGRAM_CACHE_TTL).then(|| ladder.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps `ladder`, read after [`TierCache::generation`] answered `read_in`, unless a forget
    /// came in between.
    fn store(&self, program_id: i64, ladder: Ladder, read_in: u64) {
        if let Ok(mut ladders) = self.ladders.write() {
            if self.generation.load(Ordering::SeqCst) == read_in {
                ladders.insert(program_id, (ladder, Instant::now()));
            }
        }
    }

    pub(crate) fn forget(&self, program_id: i64) {
        if let Ok(mut ladders) = self.ladders.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            ladders.remove(&program_id);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut ladders) = self.ladders.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            ladders.clear();
        }
    }
}

impl Loyalty {
    /// The program's tiers, lowest first, from this instance's cache (read through `conn` when
    /// missing or older than `PROGRAM_CACHE_TTL`).
    pub(crate) async fn tier_ladder<C: ConnectionTrait>(
        &self,
        conn: &C,
        program_id: i64,
    ) -> Result<Ladder, sea_orm::DbErr> {
        let cache = self.tier_cache();
        if let Some(ladder) = cache.get(program_id) {
            return Ok(ladder);
        }
        let read_in = cache.generation();
        let ladder: Ladder = tiers::Entity::find()
            .filter(tiers::Column::ProgramId.eq(program_id))
            .order_by_asc(tiers::Column::MinQualificationMinor)
            .all(conn)
            .await?
            .into_iter()
            .map(Tier::from)
            .collect();
        cache.store(program_id, ladder.clone(), read_in);
        Ok(ladder)
    }

    /// Places the member of `tx` in the tier its QUALIFICATION balance reaches, from the cached
    /// ladder (the answer [`tier_for`] reads): the ledger's `Host::place_in_tier` for every operation
    /// that moved QUALIFICATION. The thresholds may be as old as a program setting (see the
    /// module); the balance is the locked member's.
    pub(crate) async fn place_in_tier_cached(&self, tx: &mut Tx<'_>) -> TxResult<()> {
        if !tx.qualification_changed() {
            return Ok(());
        }
        let qualification = tx.balance(Account::Qualification).await?;
        let ladder = self.tier_ladder(tx.txn, tx.program.id).await?;
        tx.place_in_tier(reached(&ladder, qualification));
        Ok(())
    }

    /// Drops this instance's ladder of the program and tells the others (with the program
    /// settings: tiers are part of them).
    async fn tiers_changed(&self, program: &Program) {
        self.forget_program(program.id);
        self.announce("program.changed", program.id.to_string())
            .await;
    }

    pub async fn tiers(&self, program: &Program) -> DomainResult<Vec<Tier>> {
        Ok(tiers::Entity::find()
            .filter(tiers::Column::ProgramId.eq(program.id))
            .order_by_asc(tiers::Column::MinQualificationMinor)
            .all(self.db())
            .await?
            .into_iter()
            .map(Tier::from)
            .collect())
    }

    /// A tier of the program: from the cached ladder (a member's `tier` costs no read), or
    /// read when the ladder does not know it yet (created on another instance a moment ago).
    pub async fn tier(&self, program: &Program, id: i64) -> DomainResult<Option<Tier>> {
        let ladder = self.tier_ladder(self.db(), program.id).await?;
        if let Some(tier) = ladder.iter().find(|tier| tier.id == id) {
            return Ok(Some(tier.clone()));
        }
        Ok(tiers::Entity::find_by_id(id)
            .filter(tiers::Column::ProgramId.eq(program.id))
            .one(self.db())
            .await?
            .map(Tier::from))
    }

    /// The lowest tier whose threshold is above `qualification` (what a member reaches next),
    /// from the cached ladder; `None` at the top or without tiers.
    pub async fn next_tier(
        &self,
        program: &Program,
        qualification: Points,
    ) -> DomainResult<Option<Tier>> {
        let ladder = self.tier_ladder(self.db(), program.id).await?;
        Ok(ladder
            .iter()
            .find(|tier| tier.min_qualification > qualification)
            .cloned())
    }

    /// Creates (`id` = None) or changes a tier, then re-places every member of the program.
    pub async fn upsert_tier(
        &self,
        program: &Program,
        id: Option<i64>,
        input: TierInput,
    ) -> DomainResult<Tier> {
        let (loyalty, program) = (self.clone(), program.clone());
        run_detached(async move { loyalty.upsert_tier_attached(&program, id, input).await }).await
    }

    async fn upsert_tier_attached(
        &self,
        program: &Program,
        id: Option<i64>,
        input: TierInput,
    ) -> DomainResult<Tier> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(DomainError::validation("name must be 1–100 characters"));
        }
        let threshold = Points::parse(input.min_qualification, "minQualification")?;
        if threshold.minor() < 0 {
            return Err(DomainError::validation(
                "minQualification must not be negative",
            ));
        }
        let multiplier = Points::parse(input.multiplier, "multiplier")?;
        if !multiplier.is_positive() || multiplier.minor() > 10_000 {
            return Err(DomainError::validation("multiplier must be in (0, 100]"));
        }
        let now = self.now();
        let txn = self.db().begin().await?;
        let saved = match id {
            None => {
                let count = tiers::Entity::find()
                    .filter(tiers::Column::ProgramId.eq(program.id))
                    .count(&txn)
                    .await?;
                if count >= MAX_TIERS {
                    return Err(DomainError::LimitReached(format!(
                        "a program has at most {MAX_TIERS} tiers"
                    )));
                }
                tiers::Entity::insert(tiers::ActiveModel {
                    program_id: Set(program.id),
                    name: Set(name.to_owned()),
                    min_qualification_minor: Set(threshold.minor()),
                    multiplier_minor: Set(multiplier.minor()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                })
                .exec_with_returning(&txn)
                .await
            }
            Some(id) => {
                let existing = tiers::Entity::find_by_id(id)
                    .filter(tiers::Column::ProgramId.eq(program.id))
                    .one(&txn)
                    .await?
                    .ok_or_else(|| DomainError::not_found(format!("tier {id} not found")))?;
                let mut model: tiers::ActiveModel = existing.into();
                model.name = Set(name.to_owned());
                model.min_qualification_minor = Set(threshold.minor());
                model.multiplier_minor = Set(multiplier.minor());
                model.updated_at = Set(now);
                tiers::Entity::update(model).exec(&txn).await
            }
        };
        let saved = match saved {
            Ok(model) => model,
            Err(err) if classify(&err) == DbErrorKind::UniqueViolation => {
                return Err(DomainError::validation(
                    "another tier already starts at this minQualification",
                ))
            }
            Err(err) => return Err(err.into()),
        };
        replace_members(&txn, program.id).await?;
        txn.commit().await?;
        self.tiers_changed(program).await;
        Ok(Tier::from(saved))
    }

    pub async fn delete_tier(&self, program: &Program, id: i64) -> DomainResult<Tier> {
        let (loyalty, program) = (self.clone(), program.clone());
        run_detached(async move { loyalty.delete_tier_attached(&program, id).await }).await
    }

    async fn delete_tier_attached(&self, program: &Program, id: i64) -> DomainResult<Tier> {
        let txn = self.db().begin().await?;
        let existing = tiers::Entity::find_by_id(id)
            .filter(tiers::Column::ProgramId.eq(program.id))
            .one(&txn)
            .await?
            .ok_or_else(|| DomainError::not_found(format!("tier {id} not found")))?;
        members::Entity::update_many()
            .col_expr(members::Column::TierId, Expr::value(Option::<i64>::None))
            .filter(members::Column::TierId.eq(id))
            .exec(&txn)
            .await?;
        tiers::Entity::delete_by_id(id).exec(&txn).await?;
        replace_members(&txn, program.id).await?;
        txn.commit().await?;
        self.tiers_changed(program).await;
        Ok(Tier::from(existing))
    }
}

/// Puts every member of the program in the tier their qualification balance reaches.
async fn replace_members<C: ConnectionTrait>(conn: &C, program_id: i64) -> DomainResult<()> {
    let backend = conn.get_database_backend();
    let sql = "UPDATE members SET tier_id = (SELECT t.id FROM tiers t \
         WHERE t.program_id = members.program_id AND t.min_qualification_minor <= \
         (SELECT b.balance_minor FROM balances b WHERE b.member_id = members.id \
          AND b.account = 'QUALIFICATION') \
         ORDER BY t.min_qualification_minor DESC LIMIT 1) WHERE program_id = $1";
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => sql.replace("$1", "?"),
        sea_orm::DatabaseBackend::Postgres | sea_orm::DatabaseBackend::MySql => sql.to_owned(),
    };
    conn.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [program_id.into()],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(id: i64, min: i64) -> Tier {
        Tier {
            id,
            name: format!("t{id}"),
            min_qualification: Points::from_minor(min * 100),
            multiplier: Decimal::ONE,
        }
    }

    #[test]
    fn the_highest_threshold_reached_wins() {
        let ladder = [tier(1, 0), tier(2, 100), tier(3, 500)];
        let at = |q: i64| reached(&ladder, Points::from_minor(q * 100));
        assert_eq!(at(0), Some(1));
        assert_eq!(at(99), Some(1));
        assert_eq!(at(100), Some(2));
        assert_eq!(at(10_000), Some(3));
        assert_eq!(reached(&[tier(4, 10)], Points::ZERO), None);
        assert_eq!(reached(&[], Points::ZERO), None);
    }

    #[test]
    fn a_ladder_read_before_a_forget_is_not_kept() {
        let cache = TierCache::default();
        let read_in = cache.generation();
        cache.forget(7); // an admin changed the tiers while the old ladder was being read
        cache.store(7, Arc::from(vec![tier(1, 0)]), read_in);
        assert!(cache.get(7).is_none());
        let read_in = cache.generation();
        cache.store(7, Arc::from(vec![tier(1, 0)]), read_in);
        assert_eq!(cache.get(7).map(|l| l.len()), Some(1));
        cache.clear();
        assert!(cache.get(7).is_none());
    }
}
