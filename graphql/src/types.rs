//! DTOs: what the API shows, mapped from domain types (never sea-orm models).

use async_graphql::{Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::ledger::{Account as DAccount, Kind, Posting};
use loyalty_domain::members::MemberView;
use rust_decimal::Decimal;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Earn,
    Spend,
    Expire,
    Refund,
    Reversal,
    Adjust,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Points,
    /// What tiers count.
    Qualification,
    /// Free wheel spins: 1.00 per spin (`spinWheel` spends one before points).
    Spins,
}

/// One ledger row.
#[derive(SimpleObject, Clone)]
pub struct Transaction {
    pub id: ID,
    /// Signed: positive credits, negative debits.
    pub amount: Decimal,
    pub kind: TransactionKind,
    pub account: Account,
    /// The earn source (report key) for earns and their reversals.
    pub source: Option<String>,
    /// The purpose for spends, their refunds and expiries.
    pub purpose: Option<String>,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub rule_id: Option<ID>,
    pub ruleset_version: Option<i64>,
    /// The member's posting counter after this row (+1 per posting, never reused).
    pub version: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Posting> for Transaction {
    fn from(p: Posting) -> Self {
        Transaction {
            id: ID(p.id.to_string()),
            amount: p.amount.decimal(),
            kind: match p.kind {
                Kind::Earn => TransactionKind::Earn,
                Kind::Spend => TransactionKind::Spend,
                Kind::Expire => TransactionKind::Expire,
                Kind::Refund => TransactionKind::Refund,
                Kind::Reversal => TransactionKind::Reversal,
                Kind::Adjust => TransactionKind::Adjust,
            },
            account: match p.account {
                DAccount::Points => Account::Points,
                DAccount::Qualification => Account::Qualification,
                DAccount::Spins => Account::Spins,
            },
            source: p.source,
            purpose: p.purpose,
            ref_type: p.ref_type,
            ref_id: p.ref_id,
            rule_id: p.rule_id.map(|id| ID(id.to_string())),
            ruleset_version: p.ruleset_version,
            version: p.member_version,
            expires_at: p.expires_at,
            note: p.note,
            created_at: p.created_at,
        }
    }
}

pub fn transactions(postings: Vec<Posting>) -> Vec<Transaction> {
    postings.into_iter().map(Transaction::from).collect()
}

/// Profile fields shared by `me` and the admin's `member`.
#[derive(Clone)]
pub struct MemberData(pub MemberView);

impl MemberData {
    pub fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
}
