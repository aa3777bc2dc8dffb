//! Outbound webhooks: the admin's endpoints, their secrets, events, attempts and resends.

use std::time::Duration;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::webhooks::{
    Attempt, DeliveryStatus as DStatus, Endpoint, EndpointInput, EndpointPatch, EventType,
    OutboxEvent, WithSecret,
};
use loyalty_domain::{AdminActor, DomainError};

use crate::error::{parse_id, scope, to_gql, IntoGql};

/// Where an endpoint sends events, signed with its secret (Standard Webhooks).
#[derive(SimpleObject, Clone)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why the server disabled it (it kept failing); cleared when an admin enables it.
    pub disabled_reason: Option<String>,
    /// The first failure since the last successful delivery.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a round of attempts that all failed, no event goes to the endpoint before this
    /// time (its earliest retry, at most a minute later); null when nothing holds it back. A
    /// resend or a test event clears it.
    pub retry_at: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs (both signatures are sent).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Endpoint> for WebhookEndpoint {
    fn from(e: Endpoint) -> Self {
        WebhookEndpoint {
            id: ID(e.id.to_string()),
            url: e.url,
            event_types: e
                .event_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            retry_at: e.retry_at,
            previous_secret_expires_at: e.previous_secret_until,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret (`whsec_…`): shown this once.
#[derive(SimpleObject)]
pub struct WebhookEndpointSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

impl From<WithSecret> for WebhookEndpointSecret {
    fn from(w: WithSecret) -> Self {
        WebhookEndpointSecret {
            endpoint: w.endpoint.into(),
            secret: w.secret,
        }
    }
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl From<DStatus> for WebhookDeliveryStatus {
    fn from(s: DStatus) -> Self {
        match s {
            DStatus::Pending => WebhookDeliveryStatus::Pending,
            DStatus::Delivered => WebhookDeliveryStatus::Delivered,
            DStatus::Dead => WebhookDeliveryStatus::Dead,
        }
    }
}

/// One event of one endpoint: the body sent and where its delivery stands.
#[derive(SimpleObject)]
pub struct WebhookEvent {
    /// The `webhook-id` header: the same on every attempt and resend.
    pub id: String,
    #[graphql(name = "type")]
    pub event_type: String,
    pub member_id: Option<ID>,
    /// The member's version (posting counter) the event carries.
    pub member_version: Option<i64>,
    pub status: WebhookDeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The JSON body, byte for byte as signed.
    pub payload: String,
}

impl From<OutboxEvent> for WebhookEvent {
    fn from(e: OutboxEvent) -> Self {
        WebhookEvent {
            id: e.event_id,
            event_type: e.event_type.as_str().to_owned(),
            member_id: e.member_id.map(|id| ID(id.to_string())),
            member_version: e.member_version,
            status: e.status.into(),
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_at,
            last_error: e.last_error,
            created_at: e.created_at,
            delivered_at: e.delivered_at,
            payload: e.payload,
        }
    }
}

type WebhookEvents = Connection<String, WebhookEvent, EmptyFields, EmptyFields>;

/// One attempt to deliver an event.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    pub attempted_at: DateTime<Utc>,
    pub success: bool,
    /// The receiver's HTTP status; none when no answer came.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The first bytes of the answer's body.
    pub response_body: Option<String>,
    /// What went wrong before an answer (timeout, connection refused, refused address).
    pub error: Option<String>,
}

impl From<Attempt> for WebhookAttempt {
    fn from(a: Attempt) -> Self {
        WebhookAttempt {
            attempted_at: a.attempted_at,
            success: a.success,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_body: a.response_head,
            error: a.error,
        }
    }
}

#[derive(InputObject)]
pub struct WebhookEndpointInput {
    /// `http://` or `https://`; hosts resolving to loopback, private or link-local addresses
    /// are refused unless the deployment allows them.
    pub url: String,
    /// Event types to send (`webhookEventTypes`).
    pub event_types: Vec<String>,
    #[graphql(default = true)]
    pub enabled: bool,
}

#[derive(InputObject)]
pub struct WebhookEndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Admin: the event types an endpoint may subscribe to.
    async fn webhook_event_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        scope::<AdminActor>(ctx).await?;
        Ok(EventType::subscribable()
            .map(|t| t.as_str().to_owned())
            .collect())
    }

    /// Admin: the program's webhook endpoints.
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        Ok(loyalty
            .webhook_endpoints(&program)
            .await
            .gql(ctx)?
            .into_iter()
            .map(WebhookEndpoint::from)
            .collect())
    }

    /// Admin: an endpoint's events, newest first.
    #[graphql(complexity = "crate::members::page_complexity(first, child_complexity)")]
    async fn webhook_events(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<WebhookEvents> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&endpoint_id, ctx)?;
        let first = crate::members::page_size(first, ctx)?;
        let before = crate::gifts::cursor(after, ctx)?;
        let (events, has_next) = loyalty
            .webhook_events(&program, id, first, before)
            .await
            .gql(ctx)?;
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges.extend(
            events
                .into_iter()
                .map(|e| Edge::new(e.seq.to_string(), WebhookEvent::from(e))),
        );
        Ok(connection)
    }

    /// Admin: the attempts to deliver one event, oldest first.
    async fn webhook_attempts(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        event_id: String,
    ) -> async_graphql::Result<Vec<WebhookAttempt>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&endpoint_id, ctx)?;
        Ok(loyalty
            .webhook_attempts(&program, id, &event_id)
            .await
            .gql(ctx)?
            .into_iter()
            .map(WebhookAttempt::from)
            .collect())
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Admin: adds an endpoint; the answer's `secret` is shown only here.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointSecret> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let input = EndpointInput {
            url: input.url,
            event_types: input.event_types,
            enabled: input.enabled,
        };
        loyalty
            .create_webhook_endpoint(&program, input)
            .await
            .gql(ctx)
            .map(WebhookEndpointSecret::from)
    }

    /// Admin: changes an endpoint; enabling it again sends what waited.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: WebhookEndpointPatch,
    ) -> async_graphql::Result<WebhookEndpoint> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let patch = EndpointPatch {
            url: input.url,
            event_types: input.event_types,
            enabled: input.enabled,
        };
        loyalty
            .update_webhook_endpoint(&program, id, patch)
            .await
            .gql(ctx)
            .map(WebhookEndpoint::from)
    }

    /// Admin: deletes an endpoint; its undelivered events are given up.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpoint> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .delete_webhook_endpoint(&program, id)
            .await
            .gql(ctx)
            .map(WebhookEndpoint::from)
    }

    /// Admin: a new signing secret, shown only here; the old one keeps signing too for
    /// `overlapSecs` (default a day, at most 7 days; 0 ends it at once).
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 86400)] overlap_secs: i32,
    ) -> async_graphql::Result<WebhookEndpointSecret> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let overlap = u64::try_from(overlap_secs).map_err(|_| {
            to_gql(
                DomainError::validation("overlapSecs must not be negative"),
                ctx,
            )
        })?;
        loyalty
            .rotate_webhook_secret(&program, id, Duration::from_secs(overlap))
            .await
            .gql(ctx)
            .map(WebhookEndpointSecret::from)
    }

    /// Admin: sends a delivered or dead event again (same id and body); a pending one is on its
    /// way already and stays as it is.
    async fn resend_webhook_event(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        event_id: String,
    ) -> async_graphql::Result<WebhookEvent> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&endpoint_id, ctx)?;
        loyalty
            .resend_webhook_event(&program, id, &event_id)
            .await
            .gql(ctx)
            .map(WebhookEvent::from)
    }

    /// Admin: sends every delivered or dead event of the endpoint created since `since` again;
    /// how many.
    async fn resend_webhook_events(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        since: DateTime<Utc>,
    ) -> async_graphql::Result<i64> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&endpoint_id, ctx)?;
        let count = loyalty
            .resend_webhook_events(&program, id, since)
            .await
            .gql(ctx)?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    /// Admin: queues a `webhook.test` event for the endpoint.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
    ) -> async_graphql::Result<WebhookEvent> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&endpoint_id, ctx)?;
        loyalty
            .send_test_webhook(&program, id)
            .await
            .gql(ctx)
            .map(WebhookEvent::from)
    }
}
