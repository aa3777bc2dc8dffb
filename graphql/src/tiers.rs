//! Tiers: admin configuration and the member's current tier.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use loyalty_domain::program::tiers::{Tier as DTier, TierInput as DTierInput};
use loyalty_domain::AdminActor;
use rust_decimal::Decimal;

use crate::error::{parse_id, scope, IntoGql};

/// A level reached by qualification points, with an earn multiplier.
#[derive(SimpleObject, Clone)]
pub struct Tier {
    pub id: ID,
    pub name: String,
    /// QUALIFICATION balance from which a member is in this tier.
    pub min_qualification: Decimal,
    /// Earn multiplier applied by the rule engine (1.00 = none).
    pub multiplier: Decimal,
}

impl From<DTier> for Tier {
    fn from(t: DTier) -> Self {
        Tier {
            id: ID(t.id.to_string()),
            name: t.name,
            min_qualification: t.min_qualification.decimal(),
            multiplier: t.multiplier,
        }
    }
}

#[derive(InputObject)]
pub struct TierInput {
    /// Omit to create a tier.
    pub id: Option<ID>,
    pub name: String,
    pub min_qualification: Decimal,
    pub multiplier: Decimal,
}

#[derive(Default)]
pub struct TierQuery;

#[Object]
impl TierQuery {
    /// Admin: the program's tiers, lowest first.
    async fn tiers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tier>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        Ok(loyalty
            .tiers(&program)
            .await
            .gql(ctx)?
            .into_iter()
            .map(Tier::from)
            .collect())
    }
}

#[derive(Default)]
pub struct TierMutation;

#[Object]
impl TierMutation {
    /// Creates or changes a tier; every member is re-placed at once.
    async fn upsert_tier(
        &self,
        ctx: &Context<'_>,
        input: TierInput,
    ) -> async_graphql::Result<Tier> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = input.id.as_ref().map(|id| parse_id(id, ctx)).transpose()?;
        let tier = DTierInput {
            name: input.name,
            min_qualification: input.min_qualification,
            multiplier: input.multiplier,
        };
        loyalty
            .upsert_tier(&program, id, tier)
            .await
            .gql(ctx)
            .map(Tier::from)
    }

    /// Removes a tier; its members move to the tier they now reach.
    async fn delete_tier(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Tier> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .delete_tier(&program, id)
            .await
            .gql(ctx)
            .map(Tier::from)
    }
}
