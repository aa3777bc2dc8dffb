//! Challenges, missions and badges (issue 14): the definitions, their draft → publish cycle,
//! badges, the pure functions progress is computed with, and progress moved inside the
//! posting transaction of the event that caused it.
//!
//! - [`model`]: the typed definitions and the validation of an admin's input.
//! - [`window`]: which window (fixed, local week, local month) an instant belongs to.
//! - [`progress`]: the fold of a goal over events, and mission step gating.
//! - [`advance`]: progress, completion and its reward inside the event's transaction; refunds.
//! - [`book`]: the draft, `publishChallenges` and the published versions.
//! - [`badges`]: badge definitions, the admin grant and a member's badges.
//! - [`report`]: per challenge: members started and completed, the funnel per step, points.
//! - [`member`]: a member's challenges with per-goal progress, and their locked badges.

pub mod advance;
pub mod badges;
pub mod book;
pub mod member;
pub mod model;
pub mod progress;
pub mod report;
pub mod window;

pub use model::{
    Challenge, ChallengeInput, ChallengeReward, ChallengeSet, Goal, GoalInput, Measure, Window,
    WindowKind,
};
pub use progress::{
    advancing_goals, apply_event, fold_challenge, step, ChallengeState, GoalEvent, GoalState,
};
pub use window::{window_at, WindowSpan};
