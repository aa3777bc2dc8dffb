//! The one way a balance-changing operation runs: lock the member, answer a repeated
//! idempotency key from its stored result, apply, store the result, commit, then tell the bus.
//!
//! Exactly-once rests on the database: the idempotency record is written in the same
//! transaction as the postings under a unique (program, caller, key) index. Redis only answers
//! retries faster; flushing it changes nothing.
//!
//! The skeleton knows nothing above the ledger: the service lends it the database, the clock,
//! the fast path and its hooks through [`Host`] (`service/posting.rs`).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use loyalty_entities::idempotency_records;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryTrait, Statement,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actor::Caller;
use crate::error::{DomainError, DomainResult};
use crate::ledger::batch::{self, Batcher, End, Job, Step};
use crate::ledger::db::{
    lock_member_with, retry, run_detached, with_parts, HistoryQuery, MemberRef, TxError, TxResult,
};
use crate::ledger::{Posting, Tx};
use crate::store::FastStore;
use crate::tenant::Program;

pub const MAX_KEY_LEN: usize = 200;

/// A client idempotency key, scoped to its caller (program + role + subject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
}

impl IdempotencyKey {
    pub fn new(actor: &impl Caller, key: &str) -> DomainResult<Self> {
        let key = key.trim();
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(DomainError::validation(format!(
                "idempotencyKey must be 1–{MAX_KEY_LEN} characters"
            )));
        }
        Ok(IdempotencyKey {
            scope: actor.scope(),
            key: key.to_owned(),
        })
    }

    pub fn optional(actor: &impl Caller, key: Option<&str>) -> DomainResult<Option<Self>> {
        key.map(|k| Self::new(actor, k)).transpose()
    }

    /// A ledger key derived from this client key (`#n` for the n-th posting of the request).
    pub fn ledger_key(&self, n: usize) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.scope, self.key));
        format!("req:{}#{n}", &hex::encode(digest)[..32])
    }

    fn fast_key(&self, program_id: i64) -> String {
        let digest = Sha256::digest(format!("{}\n{}", self.scope, self.key));
        format!("idem:{program_id}:{}", hex::encode(digest))
    }
}

/// A balance-changing operation on one member. Its serialized form (without the key: mark the
/// key field `#[serde(skip)]`) is what "the same arguments" means.
#[async_trait]
pub(crate) trait Operation: Serialize + Clone + Send + Sync + 'static {
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    const NAME: &'static str;

    fn member(&self) -> MemberRef;
    fn idempotency_key(&self) -> Option<&IdempotencyKey>;
    /// The earn history to read with the member's lock (see [`Tx::take_history`]), if any.
    fn history(&self, _program: &Program, _now: DateTime<Utc>) -> Option<HistoryQuery> {
        None
    }
    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Self::Output>;
}

/// What the layer above lends the skeleton. The ledger calls these and knows nothing of what
/// they do; `Loyalty` implements it (`service/posting.rs`). Static dispatch, so the posting
/// path pays nothing for the seam.
pub(crate) trait Host: Clone + Send + Sync + 'static {
    fn db(&self) -> &DatabaseConnection;
    /// The lanes postings are grouped in ([`batch`]).
    fn batcher(&self) -> &Batcher;
    fn now(&self) -> DateTime<Utc>;
    /// The idempotency fast path (a hint: the database record decides).
    fn fast_path(&self) -> &Arc<dyn FastStore>;
    /// How long a stored answer stays on the fast path.
    fn fast_path_ttl(&self) -> std::time::Duration;
    /// Called after the operation, before the member row is written, when the QUALIFICATION
    /// balance moved: must call [`Tx::place_in_tier`].
    fn place_in_tier(&self, tx: &mut Tx<'_>) -> impl Future<Output = TxResult<()>> + Send;
    /// Called once per posting, after the member row is written and before the idempotency
    /// record is claimed, with everything the transaction posted: work that must commit or roll back with the postings (the webhook outbox).
    /// Rolled back with them when the posting is undone.
    fn before_commit(
        &self,
        tx: &mut Tx<'_>,
        posted: &[Posting],
    ) -> impl Future<Output = TxResult<()>> + Send;
    /// Called once after every commit that posted something or left notes ([`Tx::notes`]):
    /// live events, leaderboards.
    fn after_commit(
        &self,
        program: &Program,
        posted: Vec<Posting>,
        notes: Vec<crate::ledger::Note>,
    ) -> impl Future<Output = ()> + Send;
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    hash: String,
    response: serde_json::Value,
}

fn request_hash<O: Operation>(op: &O) -> DomainResult<String> {
    let body = serde_json::to_string(op).map_err(DomainError::internal)?;
    Ok(hex::encode(Sha256::digest(format!("{}\n{body}", O::NAME))))
}

fn replay<T: DeserializeOwned>(stored_hash: &str, response: &str, hash: &str) -> DomainResult<T> {
    if stored_hash != hash {
        return Err(DomainError::IdempotencyKeyReused(
            "this idempotencyKey was used with different arguments".into(),
        ));
    }
    let stored: Result<T, DomainError> =
        serde_json::from_str(response).map_err(DomainError::internal)?;
    stored
}

/// What a posting's work left for its caller, handed over once its batch committed.
enum Answer<T> {
    /// Applied: its postings go to the live layer, its answer to the fast path.
    Posted {
        output: T,
        posted: Vec<Posting>,
        notes: Vec<crate::ledger::Note>,
        stored: Option<String>,
    },
    /// A refusal a retry with the same key must see again: stored by a second run in the
    /// posting's place.
    Refusing(DomainError),
    /// Final, with the stored response when this run stored it.
    Final(DomainResult<T>, Option<String>),
}

enum Reply<T> {
    Done(Answer<T>),
    Retry,
    Failed(DomainError),
}

/// Runs `op` exactly once per idempotency key, to its commit or rollback even when the caller
/// stops waiting ([`run_detached`]).
pub(crate) async fn execute<H: Host, O: Operation>(
    host: &H,
    program: &Program,
    op: &O,
) -> DomainResult<O::Output> {
    let (host, program, op) = (host.clone(), program.clone(), op.clone());
    run_detached(async move { execute_attached(&host, &program, &op).await }).await
}

async fn execute_attached<H: Host, O: Operation>(
    host: &H,
    program: &Program,
    op: &O,
) -> DomainResult<O::Output> {
    let key = op.idempotency_key();
    let hash = match key {
        Some(_) => Some(request_hash(op)?),
        None => None,
    };
    if let (Some(key), Some(hash)) = (key, hash.as_deref()) {
        if let Some(raw) = host.fast_path().get(&key.fast_key(program.id)).await {
            if let Ok(stored) = serde_json::from_str::<StoredRecord>(&raw) {
                metrics::counter!("loyalty_idempotency_fast_hits_total").increment(1);
                return replay(&stored.hash, &stored.response.to_string(), hash);
            }
        }
    }
    // The first run goes through the member's lane (group commit); a run again (a lock wait
    // ran out, a serialization failure, the batch's connection lost) is a transaction of its own.
    let mut through_lane = host.batcher().enabled();
    let answer = retry(O::NAME, || {
        let lane = std::mem::replace(&mut through_lane, false);
        run_once(host, program, op, hash.clone(), lane)
    })
    .await?;
    hand_over(host, program, op, hash, answer).await
}

/// Runs `op` once: in a batch of its lane, or alone.
async fn run_once<H: Host, O: Operation>(
    host: &H,
    program: &Program,
    op: &O,
    hash: Option<String>,
    lane: bool,
) -> TxResult<Answer<O::Output>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Box::new(PostingJob {
        host: host.clone(),
        program: program.clone(),
        member: op.member(),
        op: op.clone(),
        hash,
        answer: None,
        reply: Some(reply),
    });
    if lane {
        host.batcher().submit(job).await;
    } else {
        batch::run_batch(host.db(), vec![job]).await;
    }
    match answer.await {
        Ok(Reply::Done(answer)) => Ok(answer),
        Ok(Reply::Failed(err)) => Err(TxError::Domain(err)),
        Ok(Reply::Retry) => Err(TxError::Again),
        Err(_) => Err(TxError::Domain(DomainError::internal(
            "posting lost its batch",
        ))),
    }
}

/// After the commit: tell the live layer, remember the answer on the fast path (off the
/// request path), answer.
async fn hand_over<H: Host, O: Operation>(
    host: &H,
    program: &Program,
    op: &O,
    hash: Option<String>,
    answer: Answer<O::Output>,
) -> DomainResult<O::Output> {
    let (result, stored) = match answer {
        Answer::Posted {
            output,
            posted,
            notes,
            stored,
        } => {
            if !posted.is_empty() || !notes.is_empty() {
                host.after_commit(program, posted, notes).await;
            }
            (Ok(output), stored)
        }
        Answer::Final(result, stored) => (result, stored),
        Answer::Refusing(err) => (Err(err), None),
    };
    if let (Some(key), Some(hash), Some(response)) = (op.idempotency_key(), hash, stored) {
        let (host, program, key) = (host.clone(), program.clone(), key.clone());
        tokio::spawn(async move { remember(&host, &program, &key, hash, &response).await });
    }
    result
}

/// One operation as a lane runs it.
struct PostingJob<H: Host, O: Operation> {
    host: H,
    program: Program,
    member: MemberRef,
    op: O,
    hash: Option<String>,
    answer: Option<Answer<O::Output>>,
    reply: Option<tokio::sync::oneshot::Sender<Reply<O::Output>>>,
}

impl<H: Host, O: Operation> Job for PostingJob<H, O> {
    fn member(&self) -> &MemberRef {
        &self.member
    }

    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, Result<Step, DbErr>> {
        Box::pin(async move {
            let result = match self.answer.take() {
                Some(Answer::Refusing(err)) => self.store_refusal(txn, err).await,
                _ => self.apply(txn).await,
            };
            match result {
                Ok(step) => Ok(step),
                Err(TxError::Domain(err)) => {
                    self.answer = Some(Answer::Final(Err(err), None));
                    Ok(Step::Undo { again: false })
                }
                Err(TxError::Db(err)) => Err(err),
                Err(TxError::Again) => Err(DbErr::Custom("run again".into())),
            }
        })
    }

    fn finish(mut self: Box<Self>, end: End) {
        let reply = match (end, self.answer.take()) {
            (End::Done, Some(answer)) => Reply::Done(answer),
            (End::Done, None) => Reply::Failed(DomainError::internal("posting left no answer")),
            (End::Retry, _) => Reply::Retry,
            (End::Failed(err), _) => Reply::Failed(err),
        };
        if let Some(sender) = self.reply.take() {
            // The caller may have gone (run_detached keeps the work, not the waiting).
            let _ = sender.send(reply);
        }
    }
}

impl<H: Host, O: Operation> PostingJob<H, O> {
    /// Locks the member, applies the operation, places the member in a tier, writes the member
    /// row and claims the idempotency record.
    async fn apply(&mut self, txn: &DatabaseTransaction) -> TxResult<Step> {
        let (host, program, op) = (&self.host, &self.program, &self.op);
        let member = &self.member;
        let history = match member {
            MemberRef::New(_) => None,
            MemberRef::Id(_) | MemberRef::External(_) => op.history(program, host.now()),
        };
        let locked =
            lock_member_with(txn, program.id, member, host.now(), history.as_ref()).await?;
        // A member created by this transaction runs it at the instant it joined.
        let now = match member {
            MemberRef::New(_) => locked.member.joined_at,
            MemberRef::Id(_) | MemberRef::External(_) => host.now(),
        };
        let key = op.idempotency_key();
        let mut tx = Tx::new(txn, program, locked, now);
        let output = match op.apply(&mut tx).await {
            Ok(output) => output,
            Err(TxError::Domain(err)) if key.is_some() && err.is_replayable() => {
                self.answer = Some(Answer::Refusing(err));
                return Ok(Step::Undo { again: true });
            }
            Err(err) => return Err(err),
        };
        if tx.qualification_changed() {
            host.place_in_tier(&mut tx).await?;
        }
        tx.flush_member().await?;
        let posted = std::mem::take(&mut tx.posted);
        host.before_commit(&mut tx, &posted).await?;
        let notes = std::mem::take(&mut tx.notes);
        let mut deferred = tx.take_deferred();
        drop(tx);
        let mut stored = None;
        if let (Some(key), Some(hash)) = (key, self.hash.as_deref()) {
            let ok: Result<&O::Output, DomainError> = Ok(&output);
            let response = serde_json::to_string(&ok).map_err(DomainError::internal)?;
            // The record is claimed last, with the deferred writes: a repeated key is rare, so
            // the common case pays one statement. On a repeat the work above is rolled back
            // and the first answer wins.
            let claim = claim_statement(txn, program.id, key, hash, &response, host.now());
            let claimed = txn
                .execute(with_parts(deferred, claim))
                .await?
                .rows_affected()
                == 1;
            if !claimed {
                let first = replay_recorded(txn, program.id, key, hash).await?;
                self.answer = Some(Answer::Final(first, None));
                return Ok(Step::Undo { again: false });
            }
            stored = Some(response);
        } else if let Some(last) = deferred.pop() {
            txn.execute(with_parts(deferred, last)).await?;
        }
        self.answer = Some(Answer::Posted {
            output,
            posted,
            notes,
            stored,
        });
        Ok(Step::Keep)
    }

    /// Stores a refusal under its key (the refused work is already rolled back), unless the key
    /// was claimed meanwhile: then the first answer wins.
    async fn store_refusal(
        &mut self,
        txn: &DatabaseTransaction,
        err: DomainError,
    ) -> TxResult<Step> {
        let (Some(key), Some(hash)) = (self.op.idempotency_key(), self.hash.as_deref()) else {
            return Err(TxError::Domain(err));
        };
        let refused: Result<(), &DomainError> = Err(&err);
        let response = serde_json::to_string(&refused).map_err(DomainError::internal)?;
        let program_id = self.program.id;
        if claim_record(txn, program_id, key, hash, &response, self.host.now()).await? {
            self.answer = Some(Answer::Final(Err(err), Some(response)));
        } else {
            let first = replay_recorded(txn, program_id, key, hash).await?;
            self.answer = Some(Answer::Final(first, None));
        }
        Ok(Step::Keep)
    }
}

/// The answer stored under a key another run claimed, read in this transaction (a key claimed
/// earlier in the same batch is not committed yet).
async fn replay_recorded<T: DeserializeOwned>(
    txn: &DatabaseTransaction,
    program_id: i64,
    key: &IdempotencyKey,
    hash: &str,
) -> TxResult<DomainResult<T>> {
    let record = find_record(txn, program_id, key)
        .await?
        .ok_or_else(|| DomainError::Conflict("request with this key is in flight".into()))?;
    Ok(replay(&record.request_hash, &record.response, hash))
}

async fn remember<H: Host>(
    host: &H,
    program: &Program,
    key: &IdempotencyKey,
    hash: String,
    response: &str,
) {
    let Ok(response) = serde_json::from_str::<serde_json::Value>(response) else {
        return;
    };
    if let Ok(raw) = serde_json::to_string(&StoredRecord { hash, response }) {
        host.fast_path()
            .set(&key.fast_key(program.id), &raw, host.fast_path_ttl())
            .await;
    }
}

/// Deletes client idempotency records older than `retention`; returns how many.
pub(crate) async fn purge_records<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    retention: std::time::Duration,
) -> DomainResult<u64> {
    let cutoff = now - chrono::Duration::from_std(retention).map_err(DomainError::internal)?;
    let result = idempotency_records::Entity::delete_many()
        .filter(idempotency_records::Column::CreatedAt.lt(cutoff))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

async fn find_record<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    key: &IdempotencyKey,
) -> TxResult<Option<idempotency_records::Model>> {
    Ok(idempotency_records::Entity::find()
        .filter(idempotency_records::Column::ProgramId.eq(program_id))
        .filter(idempotency_records::Column::Caller.eq(key.scope.as_str()))
        .filter(idempotency_records::Column::Key.eq(key.key.as_str()))
        .one(conn)
        .await?)
}

/// Inserts the idempotency record unless (program, caller, key) already has one; `false` then.
async fn claim_record(
    txn: &DatabaseTransaction,
    program_id: i64,
    key: &IdempotencyKey,
    hash: &str,
    response: &str,
    now: DateTime<Utc>,
) -> TxResult<bool> {
    let claim = claim_statement(txn, program_id, key, hash, response, now);
    Ok(txn.execute(claim).await?.rows_affected() == 1)
}

/// The idempotency record's `INSERT … ON CONFLICT DO NOTHING`: one row affected when this
/// posting claimed the key.
fn claim_statement(
    txn: &DatabaseTransaction,
    program_id: i64,
    key: &IdempotencyKey,
    hash: &str,
    response: &str,
    now: DateTime<Utc>,
) -> Statement {
    idempotency_records::Entity::insert(idempotency_records::ActiveModel {
        program_id: Set(program_id),
        caller: Set(key.scope.clone()),
        key: Set(key.key.clone()),
        request_hash: Set(hash.to_owned()),
        response: Set(response.to_owned()),
        created_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            idempotency_records::Column::ProgramId,
            idempotency_records::Column::Caller,
            idempotency_records::Column::Key,
        ])
        .do_nothing()
        .to_owned(),
    )
    .build(txn.get_database_backend())
}
