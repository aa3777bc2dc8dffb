//! Members: joining (the program first hears of them), registering (the mini-app sign-up),
//! profiles, balances and history.

pub mod adjust;
pub mod attributes;
pub mod miniapp;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_entities::{balances, ledger_entries, members};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use serde::{Deserialize, Serialize};

use crate::actor::{ActionCaller, MemberActor};
use crate::earning::rules::ActionRequest;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, NewMember, TxResult, MEMBER_TAKEN};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{spins_of, Account, Posting, Tx};
use crate::money::Points;
use crate::program::tiers::tier_for;
use crate::program::{validate_external_id, Program};
use crate::referrals::ReferralOutcome;
use crate::service::Loyalty;

/// Unambiguous alphabet for referral codes (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const CODE_LEN: usize = 8;
pub const MAX_PAGE: u64 = 100;

pub fn new_referral_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// A member with balances, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: i64,
    pub external_id: String,
    pub display_name: Option<String>,
    pub referral_code: String,
    pub registered_at: Option<DateTime<Utc>>,
    pub joined_at: DateTime<Utc>,
    pub login_streak: u32,
    pub last_login_date: Option<NaiveDate>,
    pub balance: Points,
    pub qualification_balance: Points,
    pub lifetime_earned: Points,
    pub lifetime_spent: Points,
    pub version: i64,
    pub tier_id: Option<i64>,
    /// Free wheel spins held (the SPINS balance; `spinWheel` spends them before points).
    #[serde(default)]
    pub free_spins: u32,
}

fn view(member: members::Model, rows: &[balances::Model], version: i64) -> MemberView {
    let of = |account: Account| {
        rows.iter()
            .find(|b| b.member_id == member.id && b.account == account.as_str())
    };
    let points = of(Account::Points);
    let amounts = Amounts {
        balance: points.map(|b| b.balance_minor).unwrap_or_default(),
        earned: points.map(|b| b.earned_minor).unwrap_or_default(),
        spent: points.map(|b| b.spent_minor).unwrap_or_default(),
        qualification: of(Account::Qualification)
            .map(|b| b.balance_minor)
            .unwrap_or_default(),
        spins: of(Account::Spins)
            .map(|b| b.balance_minor)
            .unwrap_or_default(),
    };
    view_of(member, &amounts, version)
}

/// A member's balances as a [`MemberView`] shows them (minor units; 0 for an account the member
/// has no row in).
#[derive(Debug, Default)]
struct Amounts {
    balance: i64,
    earned: i64,
    spent: i64,
    qualification: i64,
    spins: i64,
}

fn view_of(member: members::Model, amounts: &Amounts, version: i64) -> MemberView {
    MemberView {
        id: member.id,
        external_id: member.external_id,
        display_name: member.display_name,
        referral_code: member.referral_code,
        registered_at: member.registered_at,
        joined_at: member.joined_at,
        login_streak: u32::try_from(member.login_streak).unwrap_or_default(),
        last_login_date: member
            .last_login_date
            .as_deref()
            .and_then(|d| d.parse().ok()),
        balance: Points::from_minor(amounts.balance),
        qualification_balance: Points::from_minor(amounts.qualification),
        lifetime_earned: Points::from_minor(amounts.earned),
        lifetime_spent: Points::from_minor(amounts.spent),
        version,
        tier_id: member.tier_id,
        free_spins: spins_of(Points::from_minor(amounts.spins)),
    }
}

/// What `register` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub member_id: i64,
    /// False when the subject was already registered (nothing posted).
    pub created: bool,
    pub transactions: Vec<Posting>,
    /// Set when a referral code was given: linked (pending or rewarded) or why not.
    pub referral: Option<ReferralOutcome>,
}

#[derive(Clone, Serialize)]
struct RegisterOp {
    member_id: i64,
    display_name: Option<String>,
    referral_code: Option<String>,
    #[serde(skip)]
    loyalty: Loyalty,
}

#[async_trait::async_trait]
impl Operation for RegisterOp {
    type Output = Registration;
    const NAME: &'static str = "register";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Registration> {
        let created = tx.member.registered_at.is_none();
        let referral = match (created, self.referral_code.as_deref()) {
            (true, code) => register_in(&self.loyalty, tx, self.display_name.clone(), code).await?,
            (false, Some(code)) => Some(crate::referrals::existing(tx, code).await?),
            (false, None) => None,
        };
        Ok(Registration {
            member_id: self.member_id,
            created,
            transactions: tx.posted.clone(),
            referral,
        })
    }
}

/// A member the program has not seen yet: created, placed in the tier that needs no
/// qualification, paid the join reward and, when asked, registered — in one transaction.
#[derive(Clone, Serialize)]
struct JoinOp {
    member: NewMember,
    register: bool,
    referral_code: Option<String>,
    #[serde(skip)]
    loyalty: Loyalty,
}

#[async_trait::async_trait]
impl Operation for JoinOp {
    type Output = Registration;
    const NAME: &'static str = "join";

    fn member(&self) -> MemberRef {
        MemberRef::New(self.member.clone())
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Registration> {
        // A new member starts in the tier that needs no qualification, if there is one.
        tx.member.tier_id = tier_for(tx.txn, tx.program.id, Points::ZERO).await?;
        tx.touch_member();
        self.loyalty.award_builtin(tx, "join").await?;
        let referral = if self.register {
            let display_name = self.member.display_name.clone();
            register_in(
                &self.loyalty,
                tx,
                display_name,
                self.referral_code.as_deref(),
            )
            .await?
        } else {
            None
        };
        Ok(Registration {
            member_id: tx.member.id,
            created: true,
            transactions: tx.posted.clone(),
            referral,
        })
    }
}

/// Registers the locked member, pays the registration reward and attributes a referral code.
/// The registration stands even when the referral is refused.
async fn register_in(
    loyalty: &Loyalty,
    tx: &mut Tx<'_>,
    display_name: Option<String>,
    referral_code: Option<&str>,
) -> TxResult<Option<ReferralOutcome>> {
    tx.member.registered_at = Some(tx.now);
    if display_name.is_some() {
        tx.member.display_name = display_name;
    }
    tx.touch_member();
    loyalty.award_builtin(tx, "registration").await?;
    match referral_code {
        Some(code) => crate::referrals::attribute(loyalty, tx, code)
            .await
            .map(Some),
        None => Ok(None),
    }
}

impl Loyalty {
    /// Pays a built-in one-off action (join, registration) if a live rule says so.
    async fn award_builtin(&self, tx: &mut Tx<'_>, action: &str) -> TxResult<()> {
        let request = ActionRequest {
            action: action.to_owned(),
            object_id: None,
            amount: None,
            ..Default::default()
        };
        self.award(tx, &request, None, None).await.map(|_| ())
    }
}

fn validate_display_name(name: Option<&str>) -> DomainResult<Option<String>> {
    match name.map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) if name.chars().count() > 100 || name.chars().any(char::is_control) => Err(
            DomainError::validation("displayName must be at most 100 printable characters"),
        ),
        Some(name) => Ok(Some(name.to_owned())),
    }
}

impl Loyalty {
    /// Registers the token's subject: idempotent, pays `new_member_reward` when the member
    /// joins (first contact) and `new_account_registration` once.
    pub async fn register(
        &self,
        actor: &MemberActor,
        display_name: Option<&str>,
        referral_code: Option<&str>,
    ) -> DomainResult<Registration> {
        let program = self.program(&actor.program).await?;
        let display_name = validate_display_name(display_name)?;
        let referral_code = referral_code
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.chars().take(64).collect::<String>());
        let (member_id, joined) = self
            .find_or_join(
                &program,
                &actor.subject,
                display_name.clone(),
                true,
                referral_code.as_deref(),
            )
            .await?;
        if let Some(registration) = joined {
            return Ok(registration);
        }
        self.execute(
            &program,
            &RegisterOp {
                member_id,
                display_name,
                referral_code,
                loyalty: self.clone(),
            },
        )
        .await
    }

    /// The member with this external id, creating it (joining, and registering when asked) if
    /// the program has not seen it yet. Returns the member's id and the answer of a fresh join.
    pub(crate) async fn find_or_join(
        &self,
        program: &Program,
        external_id: &str,
        display_name: Option<String>,
        register: bool,
        referral_code: Option<&str>,
    ) -> DomainResult<(i64, Option<Registration>)> {
        if let Some(member) = self.find_member(program, external_id).await? {
            return Ok((member.id, None));
        }
        validate_external_id(external_id, "member external id")?;
        for _ in 0..5 {
            let join = JoinOp {
                member: NewMember {
                    external_id: external_id.to_owned(),
                    display_name: display_name.clone(),
                    referral_code: new_referral_code(),
                },
                register,
                referral_code: referral_code.map(str::to_owned),
                loyalty: self.clone(),
            };
            match self.execute(program, &join).await {
                Ok(registration) => {
                    return Ok((registration.member_id, Some(registration)));
                }
                Err(DomainError::Conflict(message)) if message == MEMBER_TAKEN => {
                    if let Some(member) = self.find_member(program, external_id).await? {
                        return Ok((member.id, None));
                    }
                    // A referral code collision: try another code.
                }
                Err(err) => return Err(err),
            }
        }
        Err(DomainError::Conflict(
            "could not create the member, try again".into(),
        ))
    }

    pub(crate) async fn find_member(
        &self,
        program: &Program,
        external_id: &str,
    ) -> DomainResult<Option<members::Model>> {
        Ok(members::Entity::find()
            .filter(members::Column::ProgramId.eq(program.id))
            .filter(members::Column::ExternalId.eq(external_id))
            .one(self.db())
            .await?)
    }

    /// The id of the member behind a member token (`None` before it joined): one indexed
    /// read, without balances.
    pub async fn member_id(&self, actor: &MemberActor) -> DomainResult<Option<i64>> {
        let program = self.program(&actor.program).await?;
        Ok(self
            .find_member(&program, &actor.subject)
            .await?
            .map(|m| m.id))
    }

    /// The member behind a member token (`None` before it joined).
    pub async fn me(&self, actor: &MemberActor) -> DomainResult<Option<MemberView>> {
        let program = self.program(&actor.program).await?;
        self.view_where(
            Condition::all()
                .add(members::Column::ProgramId.eq(program.id))
                .add(members::Column::ExternalId.eq(actor.subject.as_str())),
        )
        .await
    }

    /// A member of the program by id; `NOT_FOUND` for another program's member.
    pub async fn member(&self, program: &Program, member_id: i64) -> DomainResult<MemberView> {
        self.view_where(
            Condition::all()
                .add(members::Column::Id.eq(member_id))
                .add(members::Column::ProgramId.eq(program.id)),
        )
        .await?
        .ok_or_else(|| DomainError::not_found(format!("member {member_id} not found")))
    }

    /// The one member `filter` selects, with its balances and posting counter, in one
    /// statement, so one snapshot: the balances and the posting counter (`version`, by which a
    /// client orders live events) always belong together, which three reads did not promise
    /// while a posting committed between them; and one round trip instead of three.
    async fn view_where(&self, filter: Condition) -> DomainResult<Option<MemberView>> {
        let of = |account: Account, column: &str| {
            Expr::cust(format!(
                "(SELECT b.{column} FROM balances b \
                 WHERE b.member_id = members.id AND b.account = '{}')",
                account.as_str()
            ))
        };
        let statement = members::Entity::find()
            .filter(filter)
            .column_as(
                Expr::cust(
                    "(SELECT MAX(e.member_version) FROM ledger_entries e \
                     WHERE e.member_id = members.id)",
                ),
                "view_version",
            )
            .column_as(of(Account::Points, "balance_minor"), "view_balance")
            .column_as(of(Account::Points, "earned_minor"), "view_earned")
            .column_as(of(Account::Points, "spent_minor"), "view_spent")
            .column_as(
                of(Account::Qualification, "balance_minor"),
                "view_qualification",
            )
            .column_as(of(Account::Spins, "balance_minor"), "view_spins")
            .build(self.db().get_database_backend());
        let Some(row) = self.db().query_one(statement).await? else {
            return Ok(None);
        };
        let get = |column: &str| -> DomainResult<i64> {
            Ok(row.try_get::<Option<i64>>("", column)?.unwrap_or_default())
        };
        let amounts = Amounts {
            balance: get("view_balance")?,
            earned: get("view_earned")?,
            spent: get("view_spent")?,
            qualification: get("view_qualification")?,
            spins: get("view_spins")?,
        };
        let version = get("view_version")?;
        let member = members::Model::from_query_result(&row, "")?;
        Ok(Some(view_of(member, &amounts, version)))
    }

    /// Members of a program by id, `first` after the cursor; optional search on external id or
    /// display name. Returns one extra row's worth of "has next".
    pub async fn members(
        &self,
        program: &Program,
        first: u64,
        after: Option<i64>,
        search: Option<&str>,
    ) -> DomainResult<(Vec<MemberView>, bool)> {
        let first = first.clamp(1, MAX_PAGE);
        let mut query = members::Entity::find()
            .filter(members::Column::ProgramId.eq(program.id))
            .order_by_asc(members::Column::Id)
            .limit(first + 1);
        if let Some(after) = after {
            query = query.filter(members::Column::Id.gt(after));
        }
        if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
            let pattern = format!("%{}%", search.replace(['%', '_'], ""));
            query = query.filter(
                Condition::any()
                    .add(members::Column::ExternalId.like(pattern.clone()))
                    .add(members::Column::DisplayName.like(pattern)),
            );
        }
        let mut rows = query.all(self.db()).await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let balances = balances::Entity::find()
            .filter(balances::Column::MemberId.is_in(rows.iter().map(|m| m.id)))
            .all(self.db())
            .await?;
        let ids: Vec<i64> = rows.iter().map(|m| m.id).collect();
        let versions = self.versions(&ids).await?;
        let views = rows
            .into_iter()
            .map(|m| {
                let version = versions.get(&m.id).copied().unwrap_or_default();
                view(m, &balances, version)
            })
            .collect();
        Ok((views, has_next))
    }

    /// A member's ledger, newest first.
    pub async fn transactions(
        &self,
        program: &Program,
        member_id: i64,
        first: u64,
        before_id: Option<i64>,
    ) -> DomainResult<(Vec<Posting>, bool)> {
        let first = first.clamp(1, MAX_PAGE);
        let mut query = ledger_entries::Entity::find()
            .filter(ledger_entries::Column::ProgramId.eq(program.id))
            .filter(ledger_entries::Column::MemberId.eq(member_id))
            .order_by_desc(ledger_entries::Column::Id)
            .limit(first + 1);
        if let Some(before) = before_id {
            query = query.filter(ledger_entries::Column::Id.lt(before));
        }
        let mut rows = query.all(self.db()).await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let postings = rows
            .into_iter()
            .map(Posting::try_from)
            .collect::<DomainResult<_>>()?;
        Ok((postings, has_next))
    }

    /// The member an action is for: the token's subject (member tokens, locked by external id
    /// without a lookup), or `member_external_id` for a service, joining it if new.
    pub(crate) async fn member_ref(
        &self,
        program: &Program,
        actor: &ActionCaller,
        external_id: Option<&str>,
    ) -> DomainResult<MemberRef> {
        match (actor, external_id) {
            (ActionCaller::Member(member), None) => Ok(MemberRef::External(member.subject.clone())),
            (ActionCaller::Member(_), Some(_)) => Err(DomainError::Forbidden(
                "members act for themselves: leave memberExternalId out".into(),
            )),
            (ActionCaller::Service(_), Some(external_id)) => Ok(MemberRef::Id(
                self.find_or_join(program, external_id, None, false, None)
                    .await?
                    .0,
            )),
            (ActionCaller::Service(_), None) => {
                Err(DomainError::validation("memberExternalId is required"))
            }
        }
    }

    /// Posting counters (highest ledger `member_version`) of members.
    async fn versions(&self, ids: &[i64]) -> DomainResult<HashMap<i64, i64>> {
        #[derive(FromQueryResult)]
        struct Row {
            member_id: i64,
            version: Option<i64>,
        }
        let rows = ledger_entries::Entity::find()
            .select_only()
            .column(ledger_entries::Column::MemberId)
            .column_as(ledger_entries::Column::MemberVersion.max(), "version")
            .filter(ledger_entries::Column::MemberId.is_in(ids.iter().copied()))
            .group_by(ledger_entries::Column::MemberId)
            .into_model::<Row>()
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.member_id, r.version.unwrap_or_default()))
            .collect())
    }
}
