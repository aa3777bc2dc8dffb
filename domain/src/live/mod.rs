//! What happens live, after a commit: postings on the bus for subscriptions (`events`) and the
//! leaderboards, both rebuildable from the ledger.

pub mod events;
pub mod leaderboard;
