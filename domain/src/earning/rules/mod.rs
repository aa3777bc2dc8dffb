//! The rule engine: a pure function of (ruleset, member facts, action, clock reading) → postings.
//! No database in here; the ledger service loads the facts, calls [`evaluate`] under the member's
//! lock and posts what it returns.

pub mod conditions;
mod engine;
mod model;

pub use engine::{
    evaluate, event_facts, opportunities, Evaluation, Opportunity, PlannedEarn, Refusal, Verdict,
};
pub use model::{
    ActionRequest, Budget, EvalContext, Limit, MemberFacts, Period, Reward, Rounding, Rule,
    RuleFacts, Ruleset, Streak, BUILTIN_ACTIONS,
};
