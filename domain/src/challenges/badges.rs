//! Badges: definitions per program, the admin grant and a member's badges. A member holds each
//! badge once: every grant (admin, challenge, campaign) is `INSERT … ON CONFLICT DO NOTHING` on
//! `member_badges (member_id, badge_id)`, so a second grant is a no-op whoever makes it.

use chrono::{DateTime, Utc};
use loyalty_entities::{badges, member_badges, members};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};

use super::model::is_action_key;
use crate::earning::rules::conditions::Condition;
use crate::error::{DomainError, DomainResult};
use crate::program::Program;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// Most badges a program may define.
pub const MAX_BADGES: u64 = 500;
/// Longest image URL.
pub const MAX_IMAGE_URL_CHARS: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Badge {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub image_url: String,
}

#[derive(Clone, Debug)]
pub struct BadgeInput {
    /// 1–64 characters of a–z, 0–9 and `_`; unique in the program.
    pub code: String,
    pub name: String,
    /// `https://…` or `http://…`.
    pub image_url: String,
}

/// Who granted a member's badge (`member_badges.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadgeSource {
    Admin,
    Challenge,
    Campaign,
}

stored_enum!(BadgeSource {
    Admin => "ADMIN",
    Challenge => "CHALLENGE",
    Campaign => "CAMPAIGN",
});

/// A badge a member holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarnedBadge {
    pub badge: Badge,
    pub earned_at: DateTime<Utc>,
    pub source: BadgeSource,
}

/// The answer to a grant: the badge as the member holds it, and whether this grant gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub earned: EarnedBadge,
    pub newly_granted: bool,
}

impl BadgeInput {
    fn validate(&self) -> DomainResult<()> {
        if !is_action_key(&self.code) {
            return Err(DomainError::validation(
                "code must be 1–64 characters of a–z, 0–9 and `_`",
            ));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(DomainError::validation("name must be 1–200 characters"));
        }
        let url = self.image_url.as_str();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() <= "https://".len()
            || url.chars().count() > MAX_IMAGE_URL_CHARS
            || url.chars().any(char::is_whitespace)
        {
            return Err(DomainError::validation(format!(
                "imageUrl must be an http(s) URL of at most {MAX_IMAGE_URL_CHARS} characters"
            )));
        }
        Ok(())
    }
}

fn to_badge(m: badges::Model) -> Badge {
    Badge {
        id: m.id,
        code: m.code,
        name: m.name,
        image_url: m.image_url,
    }
}

/// Gives `member_id` the badge unless they hold it already; `true` when this call gave it.
/// Generic over the connection so a posting transaction can grant inside itself.
pub(crate) async fn insert_member_badge<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    member_id: i64,
    badge_id: i64,
    source: BadgeSource,
    source_ref: Option<String>,
    now: DateTime<Utc>,
) -> DomainResult<bool> {
    let inserted = member_badges::Entity::insert(member_badges::ActiveModel {
        program_id: Set(program_id),
        member_id: Set(member_id),
        badge_id: Set(badge_id),
        source: Set(source.as_str().to_owned()),
        source_ref: Set(source_ref),
        earned_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            member_badges::Column::MemberId,
            member_badges::Column::BadgeId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

/// The codes of the badges a member holds.
pub(crate) async fn held_codes<C: ConnectionTrait>(
    conn: &C,
    member_id: i64,
) -> Result<std::collections::BTreeSet<String>, sea_orm::DbErr> {
    Ok(member_badges::Entity::find()
        .find_also_related(badges::Entity)
        .filter(member_badges::Column::MemberId.eq(member_id))
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|(_, badge)| badge.map(|b| b.code))
        .collect())
}

impl Loyalty {
    pub async fn badges(&self, program: &Program) -> DomainResult<Vec<Badge>> {
        Ok(badges::Entity::find()
            .filter(badges::Column::ProgramId.eq(program.id))
            .order_by_asc(badges::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(to_badge)
            .collect())
    }

    /// `CONFLICT` when the program has a badge with this code.
    pub async fn create_badge(&self, program: &Program, input: BadgeInput) -> DomainResult<Badge> {
        input.validate()?;
        let existing = badges::Entity::find()
            .filter(badges::Column::ProgramId.eq(program.id))
            .count(self.db())
            .await?;
        if existing >= MAX_BADGES {
            return Err(DomainError::LimitReached(format!(
                "a program has at most {MAX_BADGES} badges"
            )));
        }
        let now = self.now();
        let inserted = badges::Entity::insert(badges::ActiveModel {
            program_id: Set(program.id),
            code: Set(input.code.clone()),
            name: Set(input.name.trim().to_owned()),
            image_url: Set(input.image_url.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([badges::Column::ProgramId, badges::Column::Code])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.db())
        .await?;
        if inserted == 0 {
            return Err(code_taken(&input.code));
        }
        self.badge_by_code(program, &input.code).await
    }

    /// `CONFLICT` when another badge of the program has the new code.
    pub async fn update_badge(
        &self,
        program: &Program,
        id: i64,
        input: BadgeInput,
    ) -> DomainResult<Badge> {
        input.validate()?;
        let row = self.badge_row(program, id).await?;
        if row.code != input.code {
            let taken = badges::Entity::find()
                .filter(badges::Column::ProgramId.eq(program.id))
                .filter(badges::Column::Code.eq(input.code.as_str()))
                .count(self.db())
                .await?;
            if taken > 0 {
                return Err(code_taken(&input.code));
            }
        }
        let mut model: badges::ActiveModel = row.into();
        model.code = Set(input.code);
        model.name = Set(input.name.trim().to_owned());
        model.image_url = Set(input.image_url);
        model.updated_at = Set(self.now());
        Ok(to_badge(
            badges::Entity::update(model).exec(self.db()).await?,
        ))
    }

    /// An admin gives a member a badge; a member already holding it keeps the first grant
    /// (`newly_granted` false).
    pub async fn grant_badge(
        &self,
        program: &Program,
        member_id: i64,
        badge_id: i64,
        granted_by: &str,
    ) -> DomainResult<Grant> {
        let badge = to_badge(self.badge_row(program, badge_id).await?);
        let member = members::Entity::find_by_id(member_id)
            .filter(members::Column::ProgramId.eq(program.id))
            .count(self.db())
            .await?;
        if member == 0 {
            return Err(DomainError::not_found(format!(
                "member {member_id} not found"
            )));
        }
        let newly_granted = insert_member_badge(
            self.db(),
            program.id,
            member_id,
            badge_id,
            BadgeSource::Admin,
            Some(granted_by.chars().take(200).collect()),
            self.now(),
        )
        .await?;
        let earned = self
            .member_badges(program, member_id)
            .await?
            .into_iter()
            .find(|earned| earned.badge.id == badge.id)
            .ok_or_else(|| {
                DomainError::internal(format!("badge {badge_id} not held after grant"))
            })?;
        Ok(Grant {
            earned,
            newly_granted,
        })
    }

    /// The badges a member holds, in the order earned.
    pub async fn member_badges(
        &self,
        program: &Program,
        member_id: i64,
    ) -> DomainResult<Vec<EarnedBadge>> {
        let rows = member_badges::Entity::find()
            .find_also_related(badges::Entity)
            .filter(member_badges::Column::ProgramId.eq(program.id))
            .filter(member_badges::Column::MemberId.eq(member_id))
            .order_by_asc(member_badges::Column::EarnedAt)
            .order_by_asc(member_badges::Column::Id)
            .all(self.db())
            .await?;
        rows.into_iter()
            .map(|(held, badge)| {
                let badge = badge.ok_or_else(|| {
                    DomainError::internal(format!("member_badges {}: badge missing", held.id))
                })?;
                Ok(EarnedBadge {
                    badge: to_badge(badge),
                    earned_at: held.earned_at,
                    source: BadgeSource::read("member_badges.source", &held.source)?,
                })
            })
            .collect()
    }

    /// Refuses a `hasBadge` naming a code the program has no badge for; the path is
    /// `{path}conditions[i].code`.
    pub(crate) async fn check_badge_codes(
        &self,
        program: &Program,
        conditions: &[Condition],
        path: &str,
    ) -> DomainResult<()> {
        let named: Vec<(usize, &str)> = conditions
            .iter()
            .enumerate()
            .filter_map(|(index, c)| match c {
                Condition::HasBadge { code } => Some((index, code.as_str())),
                _ => None,
            })
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        let badges = self.badges(program).await?;
        match named
            .iter()
            .find(|(_, code)| !badges.iter().any(|b| b.code == *code))
        {
            Some((index, code)) => Err(DomainError::validation(format!(
                "{path}conditions[{index}].code: no badge `{code}` in this program"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a badge id the program does not have (`{field}: no badge {id} in this program`).
    pub(crate) async fn check_badge_id(
        &self,
        program: &Program,
        badge_id: i64,
        field: &str,
    ) -> DomainResult<()> {
        let found = badges::Entity::find_by_id(badge_id)
            .filter(badges::Column::ProgramId.eq(program.id))
            .count(self.db())
            .await?;
        if found == 0 {
            return Err(DomainError::validation(format!(
                "{field}: no badge {badge_id} in this program"
            )));
        }
        Ok(())
    }

    async fn badge_row(&self, program: &Program, id: i64) -> DomainResult<badges::Model> {
        badges::Entity::find_by_id(id)
            .filter(badges::Column::ProgramId.eq(program.id))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("badge {id} not found")))
    }

    async fn badge_by_code(&self, program: &Program, code: &str) -> DomainResult<Badge> {
        badges::Entity::find()
            .filter(badges::Column::ProgramId.eq(program.id))
            .filter(badges::Column::Code.eq(code))
            .one(self.db())
            .await?
            .map(to_badge)
            .ok_or_else(|| DomainError::internal(format!("badge {code} missing after insert")))
    }
}

fn code_taken(code: &str) -> DomainError {
    DomainError::Conflict(format!("a badge with code `{code}` exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(code: &str, url: &str) -> BadgeInput {
        BadgeInput {
            code: code.into(),
            name: "News explorer".into(),
            image_url: url.into(),
        }
    }

    #[test]
    fn badge_codes_and_image_urls_are_checked() {
        assert!(input("news_explorer_1", "https://cdn.example/b.png")
            .validate()
            .is_ok());
        for (bad, field) in [
            (input("", "https://cdn.example/b.png"), "code"),
            (input("News-Explorer", "https://cdn.example/b.png"), "code"),
            (input(&"x".repeat(65), "https://cdn.example/b.png"), "code"),
            (input("ok", "javascript:alert(1)"), "imageUrl"),
            (input("ok", "https://cdn.example/a b.png"), "imageUrl"),
            (input("ok", "https://"), "imageUrl"),
        ] {
            match bad.validate() {
                Err(DomainError::Validation(m)) => assert!(m.starts_with(field), "{m}"),
                other => panic!("expected VALIDATION, got {other:?}"),
            }
        }
    }
}
