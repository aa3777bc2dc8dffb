//! Challenges, missions and badges (issue 14). This slice holds the definitions, their draft →
//! publish cycle, badges and the pure functions progress will be computed with; progress is
//! not yet moved by the posting transaction.
//!
//! - [`model`]: the typed definitions and the validation of an admin's input.
//! - [`window`]: which window (fixed, local week, local month) an instant belongs to.
//! - [`progress`]: the fold of a goal over events, and mission step gating.
//! - [`book`]: the draft, `publishChallenges` and the published versions.
//! - [`badges`]: badge definitions, the admin grant and a member's badges.

pub mod badges;
pub mod book;
pub mod model;
pub mod progress;
pub mod window;

pub use model::{
    Challenge, ChallengeInput, ChallengeReward, ChallengeSet, Goal, GoalInput, Measure, Window,
    WindowKind,
};
pub use progress::{
    advancing_goals, apply_event, fold_challenge, step, ChallengeState, GoalEvent, GoalState,
};
pub use window::{window_at, WindowSpan};
