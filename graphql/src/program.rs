//! Program settings: readable by every role of the program, changed by its admins.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use loyalty_domain::program::{Program as DProgram, ProgramSettings, ReferralPolicy};
use loyalty_domain::{Actor, AdminActor};
use rust_decimal::Decimal;

use crate::error::{scope, IntoGql};

#[derive(SimpleObject)]
pub struct Program {
    pub external_id: String,
    pub name: String,
    /// IANA timezone that defines "a day" for limits, streaks and reports.
    pub timezone: String,
    pub currency: String,
    /// Points worth one unit of money.
    pub points_per_currency: Decimal,
    /// Days an earned lot stays spendable; null = never expires.
    pub validity_days: Option<u32>,
    pub referral_link_template: Option<String>,
    pub referral_qualify_on: ReferralQualifyOn,
    /// Most friends one inviter may bring per program day / ever (null = no cap).
    pub referral_daily_cap: Option<u32>,
    pub referral_lifetime_cap: Option<u32>,
}

/// When a referred friend qualifies and both rewards post.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum ReferralQualifyOn {
    Registration,
    FirstPurchase,
}

impl From<&DProgram> for Program {
    fn from(p: &DProgram) -> Self {
        Program {
            external_id: p.external_id.clone(),
            name: p.name.clone(),
            timezone: p.tz.name().to_owned(),
            currency: p.currency.clone(),
            points_per_currency: p.points_per_currency,
            validity_days: p.validity_days,
            referral_link_template: p.referral_link_template.clone(),
            referral_qualify_on: if p.referrals.on_first_purchase {
                ReferralQualifyOn::FirstPurchase
            } else {
                ReferralQualifyOn::Registration
            },
            referral_daily_cap: p.referrals.daily_cap,
            referral_lifetime_cap: p.referrals.lifetime_cap,
        }
    }
}

#[derive(InputObject)]
pub struct ProgramInput {
    pub name: String,
    pub timezone: String,
    pub points_per_currency: Decimal,
    pub validity_days: Option<u32>,
    /// An http(s) URL containing `{code}`, e.g. `https://t.me/<bot>/<app>?startapp=ref_{code}`.
    pub referral_link_template: Option<String>,
    #[graphql(default_with = "ReferralQualifyOn::Registration")]
    pub referral_qualify_on: ReferralQualifyOn,
    pub referral_daily_cap: Option<u32>,
    pub referral_lifetime_cap: Option<u32>,
}

#[derive(Default)]
pub struct ProgramQuery;

#[Object]
impl ProgramQuery {
    /// The caller's program.
    async fn program(&self, ctx: &Context<'_>) -> async_graphql::Result<Program> {
        let (_, _, program) = scope::<Actor>(ctx).await?;
        Ok(Program::from(program.as_ref()))
    }

    /// Whether members can sign in through `POST /auth/telegram` (a bot token is set). Admin.
    async fn telegram_sign_in(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        loyalty.has_launch_secret(&program, TELEGRAM).await.gql(ctx)
    }
}

#[derive(Default)]
pub struct ProgramMutation;

#[Object]
impl ProgramMutation {
    /// Changes the program's settings (the currency is fixed). Every instance follows at once.
    async fn update_program(
        &self,
        ctx: &Context<'_>,
        input: ProgramInput,
    ) -> async_graphql::Result<Program> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let settings = ProgramSettings {
            name: input.name,
            timezone: input.timezone,
            points_per_currency: input.points_per_currency,
            validity_days: input.validity_days,
            referral_link_template: input.referral_link_template,
            referrals: ReferralPolicy {
                on_first_purchase: input.referral_qualify_on == ReferralQualifyOn::FirstPurchase,
                daily_cap: input.referral_daily_cap,
                lifetime_cap: input.referral_lifetime_cap,
            },
        };
        let updated = loyalty.update_program(&program, settings).await.gql(ctx)?;
        Ok(Program::from(&updated))
    }

    /// Sets the Telegram bot token that signs this program's Mini App launches (`null` turns
    /// Telegram sign-in off). Write-only: no query returns it. Answers whether sign-in is on.
    async fn set_telegram_bot_token(
        &self,
        ctx: &Context<'_>,
        bot_token: Option<String>,
    ) -> async_graphql::Result<bool> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        loyalty
            .set_launch_secret(&program, TELEGRAM, bot_token.as_deref())
            .await
            .gql(ctx)?;
        Ok(bot_token.is_some())
    }
}

/// The platform key of Telegram launch secrets.
const TELEGRAM: &str = "tg";
