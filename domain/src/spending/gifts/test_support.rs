//! Tests of the prize hooks the wheel uses: a real (SQLite) service with the demo program and a
//! stand-in for the spin operation that only awards a prize.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{grant_gift, Redemption};
use crate::actor::{Actor, Role};
use crate::clock::SystemClock;
use crate::ledger::db::{MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::Tx;
use crate::money::Points;
use crate::program::Program;
use crate::spending::vouchers::{grant_voucher, Voucher};
use crate::store::MemoryStore;
use crate::Loyalty;

/// The demo program on a fresh SQLite file, and a registered member (70.00 points).
pub(crate) async fn demo() -> (Loyalty, Arc<Program>, i64) {
    let dir =
        std::env::temp_dir().join(format!("loyalty-domain-{}", uuid::Uuid::new_v4().simple()));
    let url = crate::ledger::db::sqlite_url(&dir.join("test.db")).unwrap();
    let db = crate::ledger::db::connect(&url, 2).await.unwrap();
    crate::ledger::db::migrate(&db).await.unwrap();
    let loyalty = Loyalty::new(
        db,
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        CancellationToken::new(),
    );
    loyalty.seed_demo().await.unwrap();
    let program = loyalty.program("demo").await.unwrap();
    let actor = Actor {
        program: "demo".into(),
        role: Role::Member,
        subject: "m1".into(),
    };
    let member_id = loyalty
        .register(&actor.as_member().unwrap(), None, None)
        .await
        .unwrap()
        .member_id;
    (loyalty, program, member_id)
}

#[derive(Clone, Serialize)]
pub(crate) enum Prize {
    Gift(i64),
    Voucher(Points),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Won {
    Gift(Redemption),
    Voucher(Voucher),
}

/// What a spin does with its prize segment, without the wheel.
#[derive(Clone, Serialize)]
pub(crate) struct PrizeOp {
    pub member_id: i64,
    pub prize: Prize,
}

#[async_trait::async_trait]
impl Operation for PrizeOp {
    type Output = Won;
    const NAME: &'static str = "testPrize";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Won> {
        match self.prize {
            Prize::Gift(gift_id) => grant_gift(tx, gift_id).await.map(Won::Gift),
            Prize::Voucher(points) => grant_voucher(tx, points).await.map(Won::Voucher),
        }
    }
}
