//! Subscriptions: `balanceChanged` (member) and `activity` (admin), fed by committed postings,
//! and `challengeProgress` (member), fed by committed challenge progress.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, SimpleObject, Subscription, ID};
use futures::stream::{self, Stream};
use futures::StreamExt;
use loyalty_domain::ledger::Account as DAccount;
use loyalty_domain::live::events::{EventReceiver, PostingEvent};
use loyalty_domain::program::Program;
use loyalty_domain::{AdminActor, DomainError, Loyalty, MemberActor};
use rust_decimal::Decimal;
use tokio::sync::broadcast::error::RecvError;

use crate::error::{authorize, scope, IntoGql};
use crate::types::{Account, Transaction};

/// Who a balance event is about.
#[derive(SimpleObject, Clone)]
pub struct EventMember {
    pub id: ID,
    pub display_name: Option<String>,
}

/// A change of one account's balance, or (first, with `snapshot: true`) the current state.
#[derive(SimpleObject, Clone)]
pub struct BalanceEvent {
    /// The member's posting counter after this change: +1 per posting, never reused. A client
    /// that sees it jump by more than one missed an event and re-reads `me`.
    pub version: i64,
    pub account: Account,
    /// The account's balance after this change.
    pub balance: Decimal,
    /// The signed change; 0 in the snapshot.
    pub delta: Decimal,
    /// True for the first event of `balanceChanged`: the state when the subscription started.
    pub snapshot: bool,
    /// The ledger row; null in the snapshot.
    pub transaction: Option<Transaction>,
    pub member: EventMember,
}

fn account(account: DAccount) -> Account {
    match account {
        DAccount::Points => Account::Points,
        DAccount::Qualification => Account::Qualification,
        DAccount::Spins => Account::Spins,
    }
}

fn change(event: &PostingEvent, member: EventMember) -> BalanceEvent {
    let posting = &event.posting;
    BalanceEvent {
        version: posting.member_version,
        account: account(posting.account),
        balance: posting.balance_after.unwrap_or_default().decimal(),
        delta: posting.amount.decimal(),
        snapshot: false,
        transaction: Some(Transaction::from(posting.clone())),
        member,
    }
}

/// A committed event moved one of the caller's challenges: re-read `me { challenges }` for the
/// figures (a hint, like every live event; one lost is caught up by that read).
#[derive(SimpleObject, Clone)]
pub struct ChallengeProgressEvent {
    pub challenge_id: ID,
    /// `fixed`, `week:2026-11-30` (its local Monday) or `month:2026-12`.
    pub window_key: String,
    /// The goals (positions) it moved.
    pub goals: Vec<i32>,
    /// It completed the challenge; the reward was paid in the same transaction.
    pub completed: bool,
}

/// The next event from `rx`; a subscriber that fell behind skips ahead (and sees a gap).
async fn next_event(rx: &mut EventReceiver) -> Option<Arc<PostingEvent>> {
    loop {
        match rx.recv().await {
            Ok(event) => return Some(event),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "a subscription fell behind; its client sees a gap");
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// The caller's balance: first the current snapshot (POINTS), then every posting on any
    /// account as it commits, on whichever instance. Versions increase by one per posting; a
    /// jump means events were missed: re-read `me`. The member must have joined (`register`).
    async fn balance_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = BalanceEvent>> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let member_id = loyalty
            .member_id(actor)
            .await
            .gql(ctx)?
            .ok_or_else(|| DomainError::not_found("no member yet for this token: register first"))
            .gql(ctx)?;
        // Listen first, then read: a posting that commits in between is in both, and the
        // version filter below drops the copy.
        let rx = loyalty.events().member(member_id);
        let me = loyalty
            .me(actor)
            .await
            .gql(ctx)?
            .ok_or_else(|| DomainError::internal("member vanished"))
            .gql(ctx)?;
        let member = EventMember {
            id: ID(me.id.to_string()),
            display_name: me.display_name.clone(),
        };
        let snapshot = BalanceEvent {
            version: me.version,
            account: Account::Points,
            balance: me.balance.decimal(),
            delta: Decimal::ZERO,
            snapshot: true,
            transaction: None,
            member: member.clone(),
        };
        let changes = stream::unfold(
            (rx, me.version, member),
            |(mut rx, mut last, member)| async move {
                loop {
                    let event = next_event(&mut rx).await?;
                    if event.posting.member_version <= last {
                        continue;
                    }
                    last = event.posting.member_version;
                    let out = change(&event, member.clone());
                    return Some((out, (rx, last, member)));
                }
            },
        );
        Ok(stream::once(async move { snapshot }).chain(changes))
    }

    /// The caller's challenge progress as it commits (no snapshot: `me { challenges }` is the
    /// state). The member must have joined (`register`).
    async fn challenge_progress(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = ChallengeProgressEvent>> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let member_id = loyalty
            .member_id(actor)
            .await
            .gql(ctx)?
            .ok_or_else(|| DomainError::not_found("no member yet for this token: register first"))
            .gql(ctx)?;
        let rx = loyalty.events().member_challenges(member_id);
        Ok(stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        let out = ChallengeProgressEvent {
                            challenge_id: ID(event.challenge_id.to_string()),
                            window_key: event.window_key.clone(),
                            goals: event
                                .goals
                                .iter()
                                .map(|g| i32::try_from(*g).unwrap_or(i32::MAX))
                                .collect(),
                            completed: event.completed,
                        };
                        return Some((out, rx));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a challenge subscription fell behind");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Every posting of the admin's program as it commits (no snapshot), with the member's
    /// display name. Nothing of other programs.
    async fn activity(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = BalanceEvent>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let rx = loyalty.events().program(program.id);
        let state = (
            rx,
            loyalty.clone(),
            program,
            HashMap::<i64, EventMember>::new(),
        );
        Ok(stream::unfold(
            state,
            |(mut rx, loyalty, program, mut names)| async move {
                let event = next_event(&mut rx).await?;
                let member =
                    member_of(&loyalty, &program, &mut names, event.posting.member_id).await;
                let out = change(&event, member);
                Some((out, (rx, loyalty, program, names)))
            },
        ))
    }
}

/// The member's name, read once per subscription (names rarely change; the id is what counts).
async fn member_of(
    loyalty: &Loyalty,
    program: &Arc<Program>,
    names: &mut HashMap<i64, EventMember>,
    member_id: i64,
) -> EventMember {
    if let Some(member) = names.get(&member_id) {
        return member.clone();
    }
    let display_name = match loyalty.member(program, member_id).await {
        Ok(view) => view.display_name,
        Err(err) => {
            tracing::warn!(error = %err, member_id, "activity: member name lookup failed");
            None
        }
    };
    let member = EventMember {
        id: ID(member_id.to_string()),
        display_name,
    };
    if names.len() < 10_000 {
        names.insert(member_id, member.clone());
    }
    member
}
