//! The GraphQL schema: thin resolvers that read the [`Actor`] from the context, call one
//! `loyalty_domain` service method and map the result to DTOs. Error codes are SPEC §4.5.

mod admin;
mod challenges;
mod earning;
mod error;
mod gifts;
mod leaderboard;
mod limits;
mod live;
mod members;
mod program;
mod purchases;
mod referrals;
mod report;
mod tiers;
mod types;
mod validation_memo;
mod vouchers;
mod webhooks;
mod wheel;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};
use loyalty_domain::Loyalty;

pub use error::{actor, authorize, RequestId};
pub use limits::{root_mutation_fields, selected_operation};
pub use validation_memo::ValidationMemo;

#[derive(MergedObject, Default)]
pub struct Query(
    members::MemberQuery,
    earning::EarningQuery,
    admin::AdminQuery,
    tiers::TierQuery,
    gifts::GiftQuery,
    vouchers::VoucherQuery,
    wheel::WheelQuery,
    program::ProgramQuery,
    referrals::ReferralQuery,
    leaderboard::LeaderboardQuery,
    report::ReportQuery,
    challenges::ChallengeQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    members::MemberMutation,
    earning::EarningMutation,
    purchases::PurchaseMutation,
    admin::AdminMutation,
    tiers::TierMutation,
    gifts::GiftMutation,
    vouchers::VoucherMutation,
    wheel::WheelMutation,
    program::ProgramMutation,
    referrals::ReferralMutation,
    challenges::ChallengeMutation,
    webhooks::WebhookMutation,
);

/// Every subscription root.
#[derive(MergedSubscription, Default)]
pub struct Subscription(live::LiveSubscription);

pub type LoyaltySchema = Schema<Query, Mutation, Subscription>;

/// Hardening switches of the schema.
#[derive(Clone, Copy, Debug)]
pub struct SchemaOptions {
    pub introspection: bool,
    /// Field nesting (`limits::depth`: introspection's `ofType` chains do not count).
    pub max_depth: usize,
    /// About the number of values an answer may hold: a field costs 1 plus its children, a
    /// paginated field `first` × its children.
    pub max_complexity: usize,
}

pub fn build_schema(loyalty: Loyalty, options: SchemaOptions) -> LoyaltySchema {
    schema_builder(options).data(loyalty).finish()
}

/// The schema with its hardening and no data: what [`build_schema`] serves, before the
/// [`Loyalty`] handle is added. Enough for introspection and the SDL (no resolver runs).
pub fn schema_builder(options: SchemaOptions) -> SchemaBuilder<Query, Mutation, Subscription> {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .extension(limits::DepthLimit::new(options.max_depth))
    .extension(validation_memo::RememberedValidation)
    .limit_complexity(options.max_complexity)
    .limit_recursive_depth(32)
    .limit_directives(16);
    if !options.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
}

/// The schema in SDL: `loyalty-server schema` prints it and `schema.graphql` at the repository
/// root is a copy (a test fails when they differ). The options do not change the SDL.
pub fn sdl() -> String {
    schema_builder(SchemaOptions {
        introspection: true,
        max_depth: usize::MAX,
        max_complexity: usize::MAX,
    })
    .finish()
    .sdl()
}
