//! Tiers: levels by qualification balance, each with an earn multiplier. A member is always in
//! the highest tier whose threshold their QUALIFICATION balance reaches. Qualification points
//! are never spent, so members move down only when qualification is reversed (a refunded
//! purchase) or when an admin raises a threshold; both re-place them at once.

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
use crate::service::Loyalty;

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

/// Moves the member of `tx` to the tier its QUALIFICATION balance now reaches (the ledger asks
/// for this, through `Host::place_in_tier`, when that balance moved).
pub(crate) async fn place(tx: &mut Tx<'_>) -> TxResult<()> {
    let qualification = tx.balance(Account::Qualification).await?;
    let tier = tier_for(tx.txn, tx.program.id, qualification).await?;
    tx.place_in_tier(tier);
    Ok(())
}

impl Loyalty {
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

    pub async fn tier(&self, program: &Program, id: i64) -> DomainResult<Option<Tier>> {
        Ok(tiers::Entity::find_by_id(id)
            .filter(tiers::Column::ProgramId.eq(program.id))
            .one(self.db())
            .await?
            .map(Tier::from))
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
