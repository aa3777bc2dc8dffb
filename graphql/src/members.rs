//! `me`, `register`, members for admins, and a member's transactions.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, NaiveDate, Utc};
use loyalty_domain::members::attributes::AttributeChange;
use loyalty_domain::{Actor, AdminActor, DomainError, Loyalty, MemberActor, ServiceActor};
use rust_decimal::Decimal;

use crate::error::{authorize, parse_id, scope, to_gql, IntoGql};
use crate::types::{transactions, MemberData, Transaction};

const DEFAULT_PAGE: i32 = 20;

/// A program member.
pub struct Member(pub MemberData);

#[Object]
impl Member {
    async fn id(&self) -> ID {
        self.0.id()
    }
    /// The mini-app user id (the member token's `sub`).
    async fn external_id(&self) -> &str {
        &self.0 .0.external_id
    }
    async fn display_name(&self) -> Option<&str> {
        self.0 .0.display_name.as_deref()
    }
    async fn referral_code(&self) -> &str {
        &self.0 .0.referral_code
    }
    /// The program's referral link template with this member's code (null without a template).
    async fn referral_link(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let (_, _, program) = scope::<Actor>(ctx).await?;
        Ok(program
            .referral_link_template
            .as_ref()
            .map(|t| t.replace("{code}", &self.0 .0.referral_code)))
    }
    async fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.0 .0.registered_at
    }
    async fn joined_at(&self) -> DateTime<Utc> {
        self.0 .0.joined_at
    }
    /// Spendable points.
    async fn balance(&self) -> Decimal {
        self.0 .0.balance.decimal()
    }
    async fn qualification_balance(&self) -> Decimal {
        self.0 .0.qualification_balance.decimal()
    }
    /// Sum of all EARN postings.
    async fn lifetime_earned(&self) -> Decimal {
        self.0 .0.lifetime_earned.decimal()
    }
    /// Sum of all SPEND postings.
    async fn lifetime_spent(&self) -> Decimal {
        self.0 .0.lifetime_spent.decimal()
    }
    /// Free wheel spins held: `spinWheel` spends one before any points.
    async fn free_spins(&self) -> u32 {
        self.0 .0.free_spins
    }
    async fn login_streak(&self) -> u32 {
        self.0 .0.login_streak
    }
    async fn last_login_date(&self) -> Option<NaiveDate> {
        self.0 .0.last_login_date
    }
    /// The member's posting counter: +1 per ledger row, never reused.
    async fn version(&self) -> i64 {
        self.0 .0.version
    }
    /// The member's tier (null when the program has none or none is reached yet).
    async fn tier(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<crate::tiers::Tier>> {
        let Some(tier_id) = self.0 .0.tier_id else {
            return Ok(None);
        };
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        Ok(loyalty
            .tier(&program, tier_id)
            .await
            .gql(ctx)?
            .map(crate::tiers::Tier::from))
    }

    /// The badges this member holds, in the order earned.
    async fn badges(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::challenges::EarnedBadge>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        Ok(loyalty
            .member_badges(&program, self.0 .0.id)
            .await
            .gql(ctx)?
            .into_iter()
            .map(crate::challenges::EarnedBadge::from)
            .collect())
    }

    /// The live challenges in their current window, with per-goal progress and what is left
    /// (completed ones too, flagged); a fixed-window one that ended shows only if completed.
    async fn challenges(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::challenges::MemberChallenge>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        Ok(loyalty
            .member_challenges(&program, self.0 .0.id)
            .await
            .gql(ctx)?
            .into_iter()
            .map(crate::challenges::MemberChallenge::from)
            .collect())
    }

    /// The program's badges this member does not hold yet.
    async fn locked_badges(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::challenges::Badge>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        Ok(loyalty
            .locked_badges(&program, self.0 .0.id)
            .await
            .gql(ctx)?
            .into_iter()
            .map(crate::challenges::Badge::from)
            .collect())
    }

    /// The tier the QUALIFICATION balance reaches next (its `minQualification` is the goal of
    /// a progress bar); null at the top tier or when the program has none.
    async fn next_tier(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::tiers::Tier>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        Ok(loyalty
            .next_tier(&program, self.0 .0.qualification_balance)
            .await
            .gql(ctx)?
            .map(crate::tiers::Tier::from))
    }

    /// The next points to expire and when (lots expiring on the same program-local day add
    /// up); null when nothing will expire.
    async fn expiring_soon(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ExpiringSoon>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        let next = loyalty
            .expiring_soon(&program, self.0 .0.id)
            .await
            .gql(ctx)?;
        Ok(next.map(|n| ExpiringSoon {
            points: n.points.decimal(),
            at: n.at,
        }))
    }

    /// The ledger, newest first. Cursors are opaque.
    #[graphql(complexity = "page_complexity(first, child_complexity)")]
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Transaction, EmptyFields, EmptyFields>> {
        let (_, loyalty, program) = scope::<Actor>(ctx).await?;
        let first = page_size(first, ctx)?;
        let before = after
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| to_gql(DomainError::validation("bad cursor"), ctx))
            })
            .transpose()?;
        let (rows, has_next) = loyalty
            .transactions(&program, self.0 .0.id, first, before)
            .await
            .gql(ctx)?;
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|p| Edge::new(p.id.to_string(), Transaction::from(p))),
        );
        Ok(connection)
    }
}

/// What a page costs before it runs (the `complexity` of every field taking `first`): its
/// children once per row it may return, so nested pages multiply as their answers do.
pub(crate) fn page_complexity(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = usize::try_from(first.unwrap_or(DEFAULT_PAGE))
        .unwrap_or(1)
        .max(1);
    rows.saturating_mul(child_complexity.max(1))
}

pub(crate) fn page_size(first: Option<i32>, ctx: &Context<'_>) -> async_graphql::Result<u64> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=100).contains(&first) {
        return Err(to_gql(
            DomainError::validation("first must be between 1 and 100"),
            ctx,
        ));
    }
    Ok(u64::try_from(first).unwrap_or(20))
}

#[derive(SimpleObject)]
pub struct ExpiringSoon {
    pub points: Decimal,
    pub at: DateTime<Utc>,
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub display_name: Option<String>,
    /// The inviter's referral code (a `ref_` prefix from a start parameter is accepted).
    pub referral_code: Option<String>,
}

#[derive(SimpleObject)]
pub struct RegisterPayload {
    pub member: Member,
    /// False when this subject was already registered: nothing was posted again.
    pub created: bool,
    /// What registering paid (`new_member_reward`, `new_account_registration`,
    /// `new_user_referral`).
    pub transactions: Vec<Transaction>,
    /// Present when a referral code was given: linked or why not. Registration succeeds
    /// either way.
    pub referral: Option<Referral>,
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum ReferralStatus {
    SelfReferral,
    AlreadyRegistered,
    AlreadyReferred,
    UnknownCode,
    OtherProgram,
    InviterCapReached,
    /// Linked; both rewards follow the friend's first purchase.
    Pending,
    /// Linked; the friend was rewarded and the inviter's reward follows (its own operation,
    /// right after the registration or purchase commits).
    Rewarded,
}

#[derive(SimpleObject)]
pub struct Referral {
    pub status: ReferralStatus,
    pub reason: String,
}

impl From<loyalty_domain::referrals::ReferralOutcome> for Referral {
    fn from(o: loyalty_domain::referrals::ReferralOutcome) -> Self {
        use loyalty_domain::referrals::ReferralStatus as D;
        let status = match o.status {
            D::SelfReferral => ReferralStatus::SelfReferral,
            D::AlreadyRegistered => ReferralStatus::AlreadyRegistered,
            D::AlreadyReferred => ReferralStatus::AlreadyReferred,
            D::UnknownCode => ReferralStatus::UnknownCode,
            D::OtherProgram => ReferralStatus::OtherProgram,
            D::InviterCapReached => ReferralStatus::InviterCapReached,
            D::Pending => ReferralStatus::Pending,
            D::Rewarded => ReferralStatus::Rewarded,
        };
        Referral {
            status,
            reason: o.reason,
        }
    }
}

#[derive(Default)]
pub struct MemberQuery;

#[Object]
impl MemberQuery {
    /// The calling member; null before `register`.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Member>> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        Ok(loyalty
            .me(actor)
            .await
            .gql(ctx)?
            .map(|m| Member(MemberData(m))))
    }

    /// Admin: the program's members, oldest first.
    #[graphql(complexity = "page_complexity(first, child_complexity)")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<Connection<String, Member, EmptyFields, EmptyFields>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let first = page_size(first, ctx)?;
        let after = after
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| to_gql(DomainError::validation("bad cursor"), ctx))
            })
            .transpose()?;
        let (rows, has_next) = loyalty
            .members(&program, first, after, search.as_deref())
            .await
            .gql(ctx)?;
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|m| Edge::new(m.id.to_string(), Member(MemberData(m)))),
        );
        Ok(connection)
    }

    /// Admin: one member of the program (`NOT_FOUND` for other programs' members).
    async fn member(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Member> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        Ok(Member(MemberData(
            loyalty.member(&program, id).await.gql(ctx)?,
        )))
    }
}

#[derive(Default)]
pub struct MemberMutation;

#[Object]
impl MemberMutation {
    /// Registers the token's subject. Idempotent: a second call posts nothing.
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: Option<RegisterInput>,
    ) -> async_graphql::Result<RegisterPayload> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let display_name = input.as_ref().and_then(|i| i.display_name.as_deref());
        let referral_code = input.as_ref().and_then(|i| i.referral_code.as_deref());
        let registration = loyalty
            .register(actor, display_name, referral_code)
            .await
            .gql(ctx)?;
        let program = loyalty.program(&actor.program).await.gql(ctx)?;
        let member = loyalty
            .member(&program, registration.member_id)
            .await
            .gql(ctx)?;
        Ok(RegisterPayload {
            member: Member(MemberData(member)),
            created: registration.created,
            transactions: transactions(registration.transactions),
            referral: registration.referral.map(Referral::from),
        })
    }

    /// Service only: sets member attributes (a null `value` removes the key) and returns all
    /// of the member's attributes, by key. At most 20 per member: keys 1–64 characters of
    /// a–z, 0–9 and `_`, values 1–256 characters. An unknown member joins first, as with
    /// `recordPurchase`. Campaign conditions `memberAttributeEquals` read them.
    async fn set_member_attributes(
        &self,
        ctx: &Context<'_>,
        member_external_id: String,
        attributes: Vec<MemberAttributeInput>,
    ) -> async_graphql::Result<Vec<MemberAttribute>> {
        let (_, loyalty, program) = scope::<ServiceActor>(ctx).await?;
        let changes = attributes
            .into_iter()
            .map(|a| AttributeChange {
                key: a.key,
                value: a.value,
            })
            .collect();
        let attributes = loyalty
            .set_member_attributes(&program, &member_external_id, changes)
            .await
            .gql(ctx)?;
        Ok(attributes
            .into_iter()
            .map(|(key, value)| MemberAttribute { key, value })
            .collect())
    }
}

/// One change of `setMemberAttributes`.
#[derive(InputObject)]
pub struct MemberAttributeInput {
    pub key: String,
    /// Null removes the key.
    pub value: Option<String>,
}

/// A member attribute.
#[derive(SimpleObject)]
pub struct MemberAttribute {
    pub key: String,
    pub value: String,
}
