//! Programs (tenants): creation is idempotent on the external id; reads are cached per instance
//! and dropped when the bus says a program changed.

use std::sync::Arc;

use chrono_tz::Tz;
use loyalty_entities::programs;
use rust_decimal::Decimal;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::db::{classify, DbErrorKind};
use crate::error::{DomainError, DomainResult};
use crate::money::Points;
use crate::periods::parse_timezone;
use crate::service::Loyalty;

/// A program as the domain uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub tz: Tz,
    pub currency: String,
    /// Points worth one unit of money.
    pub points_per_currency: Decimal,
    /// Days an earned lot stays spendable; `None` = never expires.
    pub validity_days: Option<u32>,
    pub referral_link_template: Option<String>,
}

impl Program {
    fn from_model(model: programs::Model) -> DomainResult<Program> {
        Ok(Program {
            id: model.id,
            tz: parse_timezone(&model.timezone)?,
            points_per_currency: Points::from_minor(model.points_per_currency_minor).decimal(),
            validity_days: model.validity_days.and_then(|d| u32::try_from(d).ok()),
            external_id: model.external_id,
            name: model.name,
            currency: model.currency,
            referral_link_template: model.referral_link_template,
        })
    }
}

/// Settings of a new program.
#[derive(Clone, Debug)]
pub struct NewProgram {
    pub external_id: String,
    pub name: String,
    pub timezone: String,
    pub currency: String,
    pub points_per_currency: Decimal,
    pub validity_days: Option<u32>,
}

pub(crate) fn validate_external_id(value: &str, what: &str) -> DomainResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(DomainError::validation(format!(
            "{what} must be 1–64 characters of letters, digits, `_`, `-` or `.`"
        )))
    }
}

impl Loyalty {
    /// Creates a program, or returns the existing one with that external id.
    pub async fn create_program(&self, new: NewProgram) -> DomainResult<Program> {
        validate_external_id(&new.external_id, "external id")?;
        parse_timezone(&new.timezone)?;
        if new.name.trim().is_empty() || new.name.len() > 200 {
            return Err(DomainError::validation("name must be 1–200 characters"));
        }
        if new.currency.len() != 3 || !new.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DomainError::validation(
                "currency must be a 3-letter ISO code like USD",
            ));
        }
        let ratio = Points::parse(new.points_per_currency, "pointsPerCurrency")?;
        if !ratio.is_positive() || ratio.minor() > 100_000_000 {
            return Err(DomainError::validation(
                "pointsPerCurrency must be in (0, 1000000]",
            ));
        }
        if new.validity_days.is_some_and(|d| d == 0 || d > 36_500) {
            return Err(DomainError::validation(
                "validityDays must be between 1 and 36500",
            ));
        }
        let model = programs::ActiveModel {
            external_id: Set(new.external_id.clone()),
            name: Set(new.name.trim().to_owned()),
            timezone: Set(new.timezone.clone()),
            currency: Set(new.currency.clone()),
            points_per_currency_minor: Set(ratio.minor()),
            validity_days: Set(new.validity_days.and_then(|d| i32::try_from(d).ok())),
            referral_link_template: Set(None),
            ruleset_version: Set(0),
            created_at: Set(self.now()),
            ..Default::default()
        };
        match programs::Entity::insert(model).exec(self.db()).await {
            Ok(_) => {}
            Err(err) if classify(&err) == DbErrorKind::UniqueViolation => {}
            Err(err) => return Err(err.into()),
        }
        self.program(&new.external_id).await.map(|p| (*p).clone())
    }

    /// The program with this external id (cached).
    pub async fn program(&self, external_id: &str) -> DomainResult<Arc<Program>> {
        if let Some(program) = self.cached_program(external_id) {
            return Ok(program);
        }
        let model = programs::Entity::find()
            .filter(programs::Column::ExternalId.eq(external_id))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("program `{external_id}` not found")))?;
        let program = Arc::new(Program::from_model(model)?);
        self.cache_program(program.clone());
        Ok(program)
    }

    /// The live ruleset version, read inside the caller's transaction.
    pub(crate) async fn live_version<C: ConnectionTrait>(
        &self,
        conn: &C,
        program_id: i64,
    ) -> DomainResult<i64> {
        Ok(programs::Entity::find_by_id(program_id)
            .one(conn)
            .await?
            .map(|p| p.ruleset_version)
            .unwrap_or_default())
    }
}
