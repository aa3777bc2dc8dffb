//! The loyalty domain: rule engine, ledger, idempotency and program logic. Pure logic and
//! database transactions; nothing in here knows about HTTP or GraphQL.

pub mod actor;
pub mod challenges;
pub mod clock;
pub mod demo;
pub mod deployment;
pub mod earning;
pub mod error;
mod jobs;
pub mod ledger;
pub mod live;
pub mod members;
pub mod money;
pub mod periods;
pub mod program;
pub mod referrals;
pub mod report;
pub mod service;
pub mod spending;
pub mod store;
mod stored;
pub mod tenant;
pub mod webhooks;
pub mod work;

pub use actor::{
    ActionCaller, Actor, AdminActor, Capability, MemberActor, Role, ServiceActor, Viewer,
};
pub use error::{DomainError, DomainResult};
pub use money::{Money, Points};
pub use service::Loyalty;
