//! Programs (tenants): creation is idempotent on the external id; reads are cached per instance
//! and dropped when the bus says a program changed.

pub mod tiers;

pub use crate::tenant::{Program, ReferralPolicy};

use std::sync::Arc;

use loyalty_entities::programs;
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{classify, DbErrorKind};
use crate::money::Points;
use crate::periods::parse_timezone;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// What `programs.referral_qualify_on` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QualifyOn {
    Registration,
    FirstPurchase,
}

stored_enum!(QualifyOn {
    Registration => "REGISTRATION",
    FirstPurchase => "FIRST_PURCHASE",
});

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
            referrals: ReferralPolicy {
                on_first_purchase: QualifyOn::read(
                    "programs.referral_qualify_on",
                    &model.referral_qualify_on,
                )? == QualifyOn::FirstPurchase,
                daily_cap: model.referral_daily_cap.and_then(|c| u32::try_from(c).ok()),
                lifetime_cap: model
                    .referral_lifetime_cap
                    .and_then(|c| u32::try_from(c).ok()),
            },
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

/// What an admin may change about a program (the currency is fixed: money history depends on
/// it).
#[derive(Clone, Debug)]
pub struct ProgramSettings {
    pub name: String,
    pub timezone: String,
    pub points_per_currency: Decimal,
    pub validity_days: Option<u32>,
    /// e.g. `https://t.me/<bot>/<app>?startapp=ref_{code}`.
    pub referral_link_template: Option<String>,
    pub referrals: ReferralPolicy,
}

/// Checks settings; returns the ratio in points.
fn validate_settings(settings: &ProgramSettings) -> DomainResult<Points> {
    parse_timezone(&settings.timezone)?;
    if settings.name.trim().is_empty() || settings.name.chars().count() > 200 {
        return Err(DomainError::validation("name must be 1–200 characters"));
    }
    let ratio = Points::parse(settings.points_per_currency, "pointsPerCurrency")?;
    if !ratio.is_positive() || ratio.minor() > 100_000_000 {
        return Err(DomainError::validation(
            "pointsPerCurrency must be in (0, 1000000]",
        ));
    }
    if settings.validity_days.is_some_and(|d| d == 0 || d > 36_500) {
        return Err(DomainError::validation(
            "validityDays must be between 1 and 36500",
        ));
    }
    let cap_ok = |cap: Option<u32>| cap.is_none_or(|c| (1..=1_000_000).contains(&c));
    if !cap_ok(settings.referrals.daily_cap) || !cap_ok(settings.referrals.lifetime_cap) {
        return Err(DomainError::validation(
            "referral caps must be between 1 and 1000000",
        ));
    }
    if let Some(template) = &settings.referral_link_template {
        let ok = template.len() <= 500
            && template.contains("{code}")
            && (template.starts_with("https://") || template.starts_with("http://"))
            && !template.chars().any(char::is_whitespace);
        if !ok {
            return Err(DomainError::validation(
                "referralLinkTemplate must be an http(s) URL of at most 500 characters containing {code}",
            ));
        }
    }
    Ok(ratio)
}

impl Loyalty {
    /// Changes a program's settings; every instance drops its cached copy (through the bus,
    /// and at the latest after `PROGRAM_CACHE_TTL`).
    pub async fn update_program(
        &self,
        program: &Program,
        settings: ProgramSettings,
    ) -> DomainResult<Program> {
        let ratio = validate_settings(&settings)?;
        programs::Entity::update_many()
            .col_expr(
                programs::Column::Name,
                Expr::value(settings.name.trim().to_owned()),
            )
            .col_expr(
                programs::Column::Timezone,
                Expr::value(settings.timezone.clone()),
            )
            .col_expr(
                programs::Column::PointsPerCurrencyMinor,
                Expr::value(ratio.minor()),
            )
            .col_expr(
                programs::Column::ValidityDays,
                Expr::value(settings.validity_days.and_then(|d| i32::try_from(d).ok())),
            )
            .col_expr(
                programs::Column::ReferralLinkTemplate,
                Expr::value(settings.referral_link_template.clone()),
            )
            .col_expr(
                programs::Column::ReferralQualifyOn,
                Expr::value(if settings.referrals.on_first_purchase {
                    QualifyOn::FirstPurchase.as_str()
                } else {
                    QualifyOn::Registration.as_str()
                }),
            )
            .col_expr(
                programs::Column::ReferralDailyCap,
                Expr::value(
                    settings
                        .referrals
                        .daily_cap
                        .and_then(|c| i32::try_from(c).ok()),
                ),
            )
            .col_expr(
                programs::Column::ReferralLifetimeCap,
                Expr::value(
                    settings
                        .referrals
                        .lifetime_cap
                        .and_then(|c| i32::try_from(c).ok()),
                ),
            )
            .filter(programs::Column::Id.eq(program.id))
            .exec(self.db())
            .await?;
        self.forget_program(program.id);
        self.announce("program.changed", program.id.to_string())
            .await;
        self.program(&program.external_id)
            .await
            .map(|p| (*p).clone())
    }

    /// Creates a program, or returns the existing one with that external id.
    pub async fn create_program(&self, new: NewProgram) -> DomainResult<Program> {
        validate_external_id(&new.external_id, "external id")?;
        if new.currency.len() != 3 || !new.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DomainError::validation(
                "currency must be a 3-letter ISO code like USD",
            ));
        }
        let ratio = validate_settings(&ProgramSettings {
            name: new.name.clone(),
            timezone: new.timezone.clone(),
            points_per_currency: new.points_per_currency,
            validity_days: new.validity_days,
            referral_link_template: None,
            referrals: ReferralPolicy {
                on_first_purchase: false,
                daily_cap: None,
                lifetime_cap: None,
            },
        })?;
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
