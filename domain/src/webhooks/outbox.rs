//! The outbox rows of a transaction, written before it commits: one per (event, endpoint that
//! subscribed to its type), in one statement. A program without an enabled endpoint writes
//! nothing and reads nothing (its empty list is cached like its settings).

use std::sync::Arc;

use loyalty_entities::{members, webhook_endpoints, webhook_outbox};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryTrait,
};

use crate::error::DomainResult;
use crate::ledger::db::TxResult;
use crate::ledger::{Posting, Tx};
use crate::live::events::ChallengeEvent;
use crate::service::Loyalty;
use crate::stored::Stored;
use crate::tenant::Program;
use crate::webhooks::events::{self, DeliveryStatus, Event, EventType};
use crate::webhooks::Subscription;

impl Loyalty {
    /// The program's enabled endpoints, from the cache or read with `conn` (inside a posting,
    /// its own transaction: a pooled connection could be waited for by every posting at once).
    pub(crate) async fn webhook_subscriptions<C: ConnectionTrait>(
        &self,
        conn: &C,
        program_id: i64,
    ) -> DomainResult<Arc<Vec<Subscription>>> {
        if let Some(subs) = self.webhooks().cached(program_id) {
            return Ok(subs);
        }
        let rows = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::ProgramId.eq(program_id))
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .filter(webhook_endpoints::Column::DeletedAt.is_null())
            .all(conn)
            .await?;
        let subs = rows
            .into_iter()
            .map(|row| {
                Ok(Subscription {
                    endpoint_id: row.id,
                    types: super::endpoints::stored_types(&row.event_types)?,
                })
            })
            .collect::<DomainResult<Vec<_>>>()?;
        let subs = Arc::new(subs);
        self.webhooks().cache(program_id, subs.clone());
        Ok(subs)
    }

    /// Writes the transaction's events to the outbox (the ledger's `before_commit`).
    pub(crate) async fn write_outbox(&self, tx: &mut Tx<'_>, posted: &[Posting]) -> TxResult<()> {
        let tier_moved = tx.member.tier_id != tx.tier_at_lock;
        let completed = completed_challenges(tx);
        if posted.is_empty() && !tier_moved && completed.is_empty() {
            return Ok(());
        }
        let subs = self.webhook_subscriptions(tx.txn, tx.program.id).await?;
        if subs.is_empty() {
            return Ok(());
        }
        let mut events = Vec::new();
        for posting in posted {
            events.extend(events::posting_events(
                tx.program,
                posting,
                &tx.member.external_id,
            ));
        }
        if tier_moved {
            // The ladder the member was just placed by (cached: no read).
            let ladder = self.tier_ladder(tx.txn, tx.program.id).await?;
            let named = |id: Option<i64>| {
                id.map(|id| {
                    let name = ladder.iter().find(|t| t.id == id).map(|t| t.name.as_str());
                    (id, name)
                })
            };
            events.push(events::tier_event(
                tx.program,
                tx.member.id,
                &tx.member.external_id,
                tx.version,
                named(tx.tier_at_lock),
                named(tx.member.tier_id),
                tx.now,
            ));
        }
        for done in completed {
            // Stable: one completion per member, challenge and window.
            let id = format!(
                "evt_m{}_challenge{}_{}",
                tx.member.id, done.challenge_id, done.window_key
            );
            events.push(events::member_event(
                tx.program,
                EventType::ChallengeCompleted,
                id,
                tx.member.id,
                &tx.member.external_id,
                tx.version,
                tx.now,
                (
                    "challenge",
                    serde_json::json!({
                        "id": done.challenge_id.to_string(),
                        "windowKey": done.window_key,
                    }),
                ),
            ));
        }
        // Nothing reads it back: it goes with the posting's last statement.
        if let Some(insert) =
            insert_statement(tx.txn.get_database_backend(), tx.program, &subs, &events)
        {
            tx.write_later("webhook_outbox", insert).await?;
        }
        Ok(())
    }
}

/// The challenges this transaction completed, from the notes progress left for the live layer.
fn completed_challenges(tx: &Tx<'_>) -> Vec<ChallengeEvent> {
    crate::ledger::notes_of::<ChallengeEvent>(&tx.notes)
        .filter(|event| event.completed)
        .cloned()
        .collect()
}

impl Loyalty {
    /// Writes one event of a member that posted nothing (`events::member_event`) with `conn`,
    /// the caller's transaction, when an endpoint wants it; `true` when it did (then wake the
    /// worker after the commit).
    pub(crate) async fn write_member_event<C: ConnectionTrait>(
        &self,
        conn: &C,
        program: &Program,
        kind: EventType,
        id: String,
        member_id: i64,
        object: (&str, serde_json::Value),
    ) -> DomainResult<bool> {
        let subs = self.webhook_subscriptions(conn, program.id).await?;
        if !subs.iter().any(|s| s.types.contains(&kind)) {
            return Ok(false);
        }
        let external_id = members::Entity::find_by_id(member_id)
            .one(conn)
            .await?
            .map(|m| m.external_id)
            .unwrap_or_default();
        let version = conn
            .query_one(crate::ledger::db::stmt(
                conn.get_database_backend(),
                "SELECT COALESCE(MAX(member_version), 0) AS v FROM ledger_entries \
                 WHERE member_id = $1",
                vec![member_id.into()],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "v"))
            .transpose()?
            .unwrap_or_default();
        let event = events::member_event(
            program,
            kind,
            id,
            member_id,
            &external_id,
            version,
            self.now(),
            object,
        );
        insert(conn, program, &subs, &[event]).await?;
        Ok(true)
    }
}

/// Fans `events` out to the subscriptions that want them; one statement, none when no
/// subscription wants any.
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    program: &Program,
    subs: &[Subscription],
    events: &[Event],
) -> DomainResult<u64> {
    let Some(insert) = insert_statement(conn.get_database_backend(), program, subs, events) else {
        return Ok(0);
    };
    Ok(conn.execute(insert).await?.rows_affected())
}

/// The outbox rows of `events` for the subscriptions that want them, as one `INSERT`; `None`
/// when no subscription wants any.
fn insert_statement(
    backend: sea_orm::DatabaseBackend,
    program: &Program,
    subs: &[Subscription],
    events: &[Event],
) -> Option<sea_orm::Statement> {
    let rows: Vec<webhook_outbox::ActiveModel> = subs
        .iter()
        .flat_map(|sub| {
            events
                .iter()
                .filter(|e| e.kind == EventType::Test || sub.types.contains(&e.kind))
                .map(move |e| row(program, sub.endpoint_id, e))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(webhook_outbox::Entity::insert_many(rows).build(backend))
}

fn row(program: &Program, endpoint_id: i64, event: &Event) -> webhook_outbox::ActiveModel {
    webhook_outbox::ActiveModel {
        program_id: Set(program.id),
        endpoint_id: Set(endpoint_id),
        event_id: Set(event.id.clone()),
        event_type: Set(event.kind.text().to_owned()),
        member_id: Set(event.member_id),
        member_version: Set(event.member_version),
        payload: Set(event.payload.clone()),
        status: Set(DeliveryStatus::Pending.text().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(event.at),
        retry_from: Set(event.at),
        last_error: Set(None),
        created_at: Set(event.at),
        delivered_at: Set(None),
        ..Default::default()
    }
}
