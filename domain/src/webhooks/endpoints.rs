//! The admin side: a program's endpoints, their signing secrets (shown once, rotated with an
//! overlap during which both sign), the events and attempts of an endpoint, resends and a
//! test event.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use loyalty_entities::{webhook_attempts, webhook_endpoints, webhook_outbox};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::error::{DomainError, DomainResult};
use crate::service::Loyalty;
use crate::stored::Stored;
use crate::tenant::Program;
use crate::webhooks::address::check_url;
use crate::webhooks::events::{test_event, DeliveryStatus, EventType};
use crate::webhooks::{outbox, Subscription, TOPIC};

/// Endpoints a program may have (deleted ones do not count).
pub const MAX_ENDPOINTS: u64 = 20;
/// The longest overlap of a rotation, during which the old secret signs too.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Events and attempts one read returns at most.
pub const MAX_PAGE: u64 = 100;
/// Bytes of secret behind `whsec_` (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// An endpoint as the admin sees it (never its secret).
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    /// Why the worker disabled it (kept failing), until an admin enables it again.
    pub disabled_reason: Option<String>,
    /// The first failure since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a pass in which every attempt failed: no event goes to it before then.
    pub retry_at: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint with its new secret: the only time the secret is shown.
#[derive(Clone, Debug)]
pub struct WithSecret {
    pub endpoint: Endpoint,
    pub secret: String,
}

pub struct EndpointInput {
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

/// What an update changes (`None`: unchanged).
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// One event of one endpoint and where its delivery stands.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    /// The outbox row (a page cursor).
    pub seq: i64,
    pub event_id: String,
    pub event_type: EventType,
    pub member_id: Option<i64>,
    pub member_version: Option<i64>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent, byte for byte.
    pub payload: String,
}

/// One delivery attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub success: bool,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The first bytes of the answer's body.
    pub response_head: Option<String>,
    /// What went wrong before an answer (timeout, connection refused, refused address).
    pub error: Option<String>,
}

pub(crate) fn stored_types(json: &str) -> DomainResult<Vec<EventType>> {
    let names: Vec<String> = serde_json::from_str(json).map_err(DomainError::internal)?;
    names
        .iter()
        .map(|name| EventType::read("webhook_endpoints.event_types", name))
        .collect()
}

fn parse_types(names: &[String]) -> DomainResult<Vec<EventType>> {
    let mut types = Vec::new();
    for name in names {
        let found = EventType::subscribable()
            .find(|t| t.as_str() == name.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = EventType::subscribable().map(EventType::as_str).collect();
                DomainError::validation(format!(
                    "eventTypes: unknown type {name:?}; known: {}",
                    known.join(", ")
                ))
            })?;
        if !types.contains(&found) {
            types.push(found);
        }
    }
    if types.is_empty() {
        return Err(DomainError::validation(
            "eventTypes must name at least one type",
        ));
    }
    Ok(types)
}

fn types_json(types: &[EventType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    serde_json::Value::from(names).to_string()
}

fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

impl TryFrom<webhook_endpoints::Model> for Endpoint {
    type Error = DomainError;

    fn try_from(m: webhook_endpoints::Model) -> DomainResult<Self> {
        Ok(Endpoint {
            id: m.id,
            event_types: stored_types(&m.event_types)?,
            url: m.url,
            enabled: m.enabled,
            disabled_reason: m.disabled_reason,
            failing_since: m.failing_since,
            retry_at: m.retry_at,
            previous_secret_until: m.previous_secret_until,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl TryFrom<webhook_outbox::Model> for OutboxEvent {
    type Error = DomainError;

    fn try_from(m: webhook_outbox::Model) -> DomainResult<Self> {
        Ok(OutboxEvent {
            seq: m.id,
            event_type: EventType::read("webhook_outbox.event_type", &m.event_type)?,
            status: DeliveryStatus::read("webhook_outbox.status", &m.status)?,
            event_id: m.event_id,
            member_id: m.member_id,
            member_version: m.member_version,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            created_at: m.created_at,
            delivered_at: m.delivered_at,
            payload: m.payload,
        })
    }
}

impl Loyalty {
    /// The program's endpoints, oldest first.
    pub async fn webhook_endpoints(&self, program: &Program) -> DomainResult<Vec<Endpoint>> {
        webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::ProgramId.eq(program.id))
            .filter(webhook_endpoints::Column::DeletedAt.is_null())
            .order_by_asc(webhook_endpoints::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(Endpoint::try_from)
            .collect()
    }

    async fn endpoint_row(
        &self,
        program: &Program,
        id: i64,
    ) -> DomainResult<webhook_endpoints::Model> {
        webhook_endpoints::Entity::find_by_id(id)
            .filter(webhook_endpoints::Column::ProgramId.eq(program.id))
            .filter(webhook_endpoints::Column::DeletedAt.is_null())
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found("webhook endpoint"))
    }

    /// Every instance forgets the program's endpoints, so postings start (or stop) writing
    /// events for them.
    async fn endpoints_changed(&self, program: &Program) {
        self.webhooks().forget(program.id);
        self.announce(TOPIC, program.id.to_string()).await;
    }

    /// Adds an endpoint; the answer holds its secret, shown this once.
    pub async fn create_webhook_endpoint(
        &self,
        program: &Program,
        input: EndpointInput,
    ) -> DomainResult<WithSecret> {
        let allow_private = self.webhooks().options().allow_private_urls;
        let url = check_url(&input.url, allow_private).await?;
        let types = parse_types(&input.event_types)?;
        let existing = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::ProgramId.eq(program.id))
            .filter(webhook_endpoints::Column::DeletedAt.is_null())
            .count(self.db())
            .await?;
        if existing >= MAX_ENDPOINTS {
            return Err(DomainError::LimitReached(format!(
                "a program has at most {MAX_ENDPOINTS} webhook endpoints"
            )));
        }
        let secret = new_secret();
        let now = self.now();
        let row = webhook_endpoints::ActiveModel {
            program_id: Set(program.id),
            url: Set(url.to_string()),
            event_types: Set(types_json(&types)),
            enabled: Set(input.enabled),
            secret: Set(secret.clone()),
            previous_secret: Set(None),
            previous_secret_until: Set(None),
            failing_since: Set(None),
            retry_at: Set(None),
            disabled_reason: Set(None),
            deleted_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(self.db())
        .await?;
        self.endpoints_changed(program).await;
        Ok(WithSecret {
            endpoint: Endpoint::try_from(row)?,
            secret,
        })
    }

    /// Changes an endpoint's URL, types or enabled flag. Enabling it clears why the worker
    /// disabled it; its undelivered events go out again.
    pub async fn update_webhook_endpoint(
        &self,
        program: &Program,
        id: i64,
        patch: EndpointPatch,
    ) -> DomainResult<Endpoint> {
        let row = self.endpoint_row(program, id).await?;
        let was_enabled = row.enabled;
        let mut active: webhook_endpoints::ActiveModel = row.into();
        if let Some(url) = &patch.url {
            let allow_private = self.webhooks().options().allow_private_urls;
            active.url = Set(check_url(url, allow_private).await?.to_string());
        }
        if let Some(types) = &patch.event_types {
            active.event_types = Set(types_json(&parse_types(types)?));
        }
        if let Some(enabled) = patch.enabled {
            active.enabled = Set(enabled);
            if enabled {
                active.disabled_reason = Set(None);
                active.failing_since = Set(None);
                active.retry_at = Set(None);
            }
        }
        active.updated_at = Set(self.now());
        let row = active.update(self.db()).await?;
        if row.enabled && !was_enabled {
            // What waited while it was off goes out now, with three days of retries again.
            let now = self.now();
            webhook_outbox::Entity::update_many()
                .col_expr(webhook_outbox::Column::NextAttemptAt, Expr::value(now))
                .col_expr(webhook_outbox::Column::RetryFrom, Expr::value(now))
                .filter(webhook_outbox::Column::EndpointId.eq(row.id))
                .filter(webhook_outbox::Column::Status.eq(DeliveryStatus::Pending.text()))
                .exec(self.db())
                .await?;
        }
        self.endpoints_changed(program).await;
        if row.enabled {
            self.webhooks().wake();
        }
        Endpoint::try_from(row)
    }

    /// Deletes an endpoint: nothing more is written or sent for it (its history stays).
    pub async fn delete_webhook_endpoint(
        &self,
        program: &Program,
        id: i64,
    ) -> DomainResult<Endpoint> {
        let row = self.endpoint_row(program, id).await?;
        let now = self.now();
        let mut active: webhook_endpoints::ActiveModel = row.into();
        active.enabled = Set(false);
        active.deleted_at = Set(Some(now));
        active.updated_at = Set(now);
        let row = active.update(self.db()).await?;
        webhook_outbox::Entity::update_many()
            .col_expr(
                webhook_outbox::Column::Status,
                Expr::value(DeliveryStatus::Dead.text()),
            )
            .col_expr(
                webhook_outbox::Column::LastError,
                Expr::value("endpoint deleted"),
            )
            .filter(webhook_outbox::Column::EndpointId.eq(id))
            .filter(webhook_outbox::Column::Status.eq(DeliveryStatus::Pending.text()))
            .exec(self.db())
            .await?;
        self.endpoints_changed(program).await;
        Endpoint::try_from(row)
    }

    /// A new secret for the endpoint, shown this once; the current one keeps signing (both
    /// signatures in `webhook-signature`) for `overlap`, so receivers can switch without
    /// losing an event.
    pub async fn rotate_webhook_secret(
        &self,
        program: &Program,
        id: i64,
        overlap: Duration,
    ) -> DomainResult<WithSecret> {
        if overlap > MAX_ROTATION_OVERLAP {
            return Err(DomainError::validation(format!(
                "overlapSecs must be at most {}",
                MAX_ROTATION_OVERLAP.as_secs()
            )));
        }
        let row = self.endpoint_row(program, id).await?;
        let now = self.now();
        let until = now + chrono::Duration::from_std(overlap).map_err(DomainError::internal)?;
        let secret = new_secret();
        let mut active: webhook_endpoints::ActiveModel = row.clone().into();
        active.previous_secret = Set((!overlap.is_zero()).then(|| row.secret.clone()));
        active.previous_secret_until = Set((!overlap.is_zero()).then_some(until));
        active.secret = Set(secret.clone());
        active.updated_at = Set(now);
        let row = active.update(self.db()).await?;
        Ok(WithSecret {
            endpoint: Endpoint::try_from(row)?,
            secret,
        })
    }

    /// A page of the endpoint's events, newest first (at most [`MAX_PAGE`]), before the
    /// event `before` ([`OutboxEvent::seq`]); and whether more follow.
    pub async fn webhook_events(
        &self,
        program: &Program,
        endpoint_id: i64,
        first: u64,
        before: Option<i64>,
    ) -> DomainResult<(Vec<OutboxEvent>, bool)> {
        let endpoint = self.endpoint_row(program, endpoint_id).await?;
        let first = first.clamp(1, MAX_PAGE);
        let mut query = webhook_outbox::Entity::find()
            .filter(webhook_outbox::Column::EndpointId.eq(endpoint.id))
            .order_by_desc(webhook_outbox::Column::Id)
            .limit(first + 1);
        if let Some(before) = before {
            query = query.filter(webhook_outbox::Column::Id.lt(before));
        }
        let mut rows = query.all(self.db()).await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let events = rows
            .into_iter()
            .map(OutboxEvent::try_from)
            .collect::<DomainResult<_>>()?;
        Ok((events, has_next))
    }

    async fn outbox_row(
        &self,
        program: &Program,
        endpoint_id: i64,
        event_id: &str,
    ) -> DomainResult<webhook_outbox::Model> {
        let endpoint = self.endpoint_row(program, endpoint_id).await?;
        webhook_outbox::Entity::find()
            .filter(webhook_outbox::Column::EndpointId.eq(endpoint.id))
            .filter(webhook_outbox::Column::EventId.eq(event_id))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found("webhook event"))
    }

    /// One event of an endpoint.
    pub async fn webhook_event(
        &self,
        program: &Program,
        endpoint_id: i64,
        event_id: &str,
    ) -> DomainResult<OutboxEvent> {
        OutboxEvent::try_from(self.outbox_row(program, endpoint_id, event_id).await?)
    }

    /// The attempts to deliver one event, oldest first (at most [`MAX_PAGE`]).
    pub async fn webhook_attempts(
        &self,
        program: &Program,
        endpoint_id: i64,
        event_id: &str,
    ) -> DomainResult<Vec<Attempt>> {
        let row = self.outbox_row(program, endpoint_id, event_id).await?;
        Ok(webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::OutboxId.eq(row.id))
            .order_by_asc(webhook_attempts::Column::Id)
            .limit(MAX_PAGE)
            .all(self.db())
            .await?
            .into_iter()
            .map(|a| Attempt {
                attempted_at: a.attempted_at,
                success: a.success,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                response_head: a.response_head,
                error: a.error,
            })
            .collect())
    }

    /// Sends a delivered or dead event again (same id, same body), with three days of retries
    /// from now; a pending one is left as it is (it is on its way).
    pub async fn resend_webhook_event(
        &self,
        program: &Program,
        endpoint_id: i64,
        event_id: &str,
    ) -> DomainResult<OutboxEvent> {
        let row = self.outbox_row(program, endpoint_id, event_id).await?;
        self.resend(row.endpoint_id, webhook_outbox::Column::Id.eq(row.id))
            .await?;
        self.webhook_event(program, endpoint_id, event_id).await
    }

    /// Sends every delivered or dead event of the endpoint created at or after `since` again;
    /// how many.
    pub async fn resend_webhook_events(
        &self,
        program: &Program,
        endpoint_id: i64,
        since: DateTime<Utc>,
    ) -> DomainResult<u64> {
        let endpoint = self.endpoint_row(program, endpoint_id).await?;
        self.resend(
            endpoint.id,
            webhook_outbox::Column::EndpointId
                .eq(endpoint.id)
                .and(webhook_outbox::Column::CreatedAt.gte(since)),
        )
        .await
    }

    async fn resend(
        &self,
        endpoint_id: i64,
        which: sea_orm::sea_query::SimpleExpr,
    ) -> DomainResult<u64> {
        let now = self.now();
        let result = webhook_outbox::Entity::update_many()
            .col_expr(
                webhook_outbox::Column::Status,
                Expr::value(DeliveryStatus::Pending.text()),
            )
            .col_expr(webhook_outbox::Column::NextAttemptAt, Expr::value(now))
            .col_expr(webhook_outbox::Column::RetryFrom, Expr::value(now))
            .filter(which)
            // A pending event is on its way already (perhaps in flight right now: resetting
            // its lease would send it twice).
            .filter(webhook_outbox::Column::Status.ne(DeliveryStatus::Pending.text()))
            .exec(self.db())
            .await?;
        self.try_now(endpoint_id).await?;
        Ok(result.rows_affected)
    }

    /// An admin's resend or test: a failed pass no longer keeps claims off the endpoint
    /// (`retry_at`), and the worker looks now.
    async fn try_now(&self, endpoint_id: i64) -> DomainResult<()> {
        webhook_endpoints::Entity::update_many()
            .col_expr(
                webhook_endpoints::Column::RetryAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_endpoints::Column::Id.eq(endpoint_id))
            .filter(webhook_endpoints::Column::RetryAt.is_not_null())
            .exec(self.db())
            .await?;
        self.webhooks().wake();
        Ok(())
    }

    /// Queues a `webhook.test` event for the endpoint (whatever it subscribed to).
    pub async fn send_test_webhook(
        &self,
        program: &Program,
        endpoint_id: i64,
    ) -> DomainResult<OutboxEvent> {
        let endpoint = self.endpoint_row(program, endpoint_id).await?;
        let event = test_event(program, self.now());
        let sub = Subscription {
            endpoint_id: endpoint.id,
            types: Vec::new(),
        };
        outbox::insert(self.db(), program, &[sub], std::slice::from_ref(&event)).await?;
        self.try_now(endpoint.id).await?;
        self.webhook_event(program, endpoint_id, &event.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_known_distinct_and_not_empty() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_types(&names(&[
                "points.earned",
                "points.earned",
                "member.tier_changed"
            ]))
            .unwrap(),
            [EventType::PointsEarned, EventType::TierChanged]
        );
        assert!(parse_types(&names(&[])).is_err());
        assert!(parse_types(&names(&["webhook.test"])).is_err());
        assert!(parse_types(&names(&["points.stolen"])).is_err());
        let json = types_json(&[EventType::PointsSpent]);
        assert_eq!(stored_types(&json).unwrap(), [EventType::PointsSpent]);
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert!(standardwebhooks::Webhook::new(&secret).is_ok());
        assert_ne!(secret, new_secret());
    }
}
