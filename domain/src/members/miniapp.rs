//! Mini-app entry: a platform signs the launch payload it hands the mini-app, and we exchange a
//! verified payload for our own member token. Telegram is the first platform; Zalo and WeChat
//! adapters implement [`LaunchVerifier`] the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use loyalty_entities::launch_secrets;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Deserialize;
use sha2::Sha256;

use crate::actor::{Actor, Role};
use crate::error::{DomainError, DomainResult};
use crate::members::{MemberView, Registration};
use crate::program::Program;
use crate::service::Loyalty;

type HmacSha256 = Hmac<Sha256>;

/// Launch payloads larger than this are refused before any parsing (Telegram's are ~1 KB).
pub const MAX_LAUNCH_DATA_BYTES: usize = 8 * 1024;

/// Who a verified launch payload speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchUser {
    /// The platform's user id, e.g. Telegram's numeric `user.id`.
    pub platform_user_id: String,
    pub display_name: Option<String>,
    /// The launch parameter (Telegram `start_param`), e.g. `ref_K7P2QX`.
    pub start_param: Option<String>,
    pub auth_date: DateTime<Utc>,
}

/// Why a launch payload was refused. The messages are safe to show to the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("initData is empty or longer than 8192 bytes")]
    Size,
    #[error("initData is not a valid query string: {0}")]
    Malformed(String),
    #[error("initData has no hash")]
    MissingHash,
    #[error("initData signature does not match (tampered data or another bot's token)")]
    BadSignature,
    #[error("initData has no valid auth_date")]
    MissingAuthDate,
    #[error("initData is too old: auth_date is more than {0} seconds ago")]
    Expired(i64),
    #[error("initData auth_date is in the future")]
    FromTheFuture,
    #[error("initData has no valid user")]
    MissingUser,
}

/// A platform's launch-payload check: pure, given the platform secret and the time.
pub trait LaunchVerifier: Send + Sync {
    /// The prefix of member external ids created through this platform (`tg` → `tg-12345`).
    fn platform(&self) -> &'static str;

    fn verify(
        &self,
        payload: &str,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<LaunchUser, LaunchError>;
}

/// Telegram Mini App `initData`, checked as Telegram specifies
/// (<https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app>):
/// secret key = HMAC-SHA256(key "WebAppData", bot token); hash = hex HMAC-SHA256(secret key,
/// data-check-string), where the data-check-string is every received field but `hash`, as
/// `key=value`, sorted by key, joined by `\n`.
#[derive(Clone, Copy, Debug)]
pub struct TelegramVerifier {
    /// How old `auth_date` may be.
    pub max_age: Duration,
}

/// How far ahead of our clock a platform's `auth_date` may be (clock skew).
const FUTURE_SKEW_SECS: i64 = 60;

impl LaunchVerifier for TelegramVerifier {
    fn platform(&self) -> &'static str {
        "tg"
    }

    fn verify(
        &self,
        init_data: &str,
        bot_token: &str,
        now: DateTime<Utc>,
    ) -> Result<LaunchUser, LaunchError> {
        if init_data.is_empty() || init_data.len() > MAX_LAUNCH_DATA_BYTES {
            return Err(LaunchError::Size);
        }
        let mut fields = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(init_data.as_bytes()) {
            if fields.insert(key.clone(), value).is_some() {
                return Err(LaunchError::Malformed(format!(
                    "field `{key}` appears twice"
                )));
            }
        }
        let hash = fields.remove("hash").ok_or(LaunchError::MissingHash)?;
        let hash = hex::decode(hash.as_bytes()).map_err(|_| LaunchError::BadSignature)?;
        let data_check_string = fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("\n");
        let secret_key = hmac_sha256(b"WebAppData", bot_token.as_bytes());
        let mut mac =
            HmacSha256::new_from_slice(&secret_key).map_err(|_| LaunchError::BadSignature)?;
        mac.update(data_check_string.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&hash)
            .map_err(|_| LaunchError::BadSignature)?;

        // Only signed data is interpreted from here on.
        let auth_date = fields
            .get("auth_date")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or(LaunchError::MissingAuthDate)?;
        if now - auth_date > self.max_age {
            return Err(LaunchError::Expired(self.max_age.num_seconds()));
        }
        if auth_date - now > Duration::seconds(FUTURE_SKEW_SECS) {
            return Err(LaunchError::FromTheFuture);
        }
        let user: TelegramUser = fields
            .get("user")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or(LaunchError::MissingUser)?;
        Ok(LaunchUser {
            platform_user_id: user.id.to_string(),
            display_name: user.display_name(),
            start_param: fields
                .get("start_param")
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty()),
            auth_date,
        })
    }
}

#[derive(Deserialize)]
struct TelegramUser {
    id: i64,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
}

impl TelegramUser {
    fn display_name(&self) -> Option<String> {
        let full = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let name = if full.is_empty() {
            self.username.clone().unwrap_or_default()
        } else {
            full
        };
        // The member's display name is at most 100 printable characters.
        let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
        Some(name).filter(|n| !n.trim().is_empty())
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Signs `fields` as Telegram would for `bot_token`: the `initData` string a mini-app receives.
/// For tests, the demo and client developers.
pub fn sign_telegram_init_data(fields: &[(&str, &str)], bot_token: &str) -> String {
    let mut sorted: Vec<_> = fields.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let data_check_string = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let secret_key = hmac_sha256(b"WebAppData", bot_token.as_bytes());
    let hash = hex::encode(hmac_sha256(&secret_key, data_check_string.as_bytes()));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        out.append_pair(k, v);
    }
    out.append_pair("hash", &hash);
    out.finish()
}

/// A verified launch, exchanged for a member.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The member token's claims: program, role `member`, subject `{platform}-{user id}`.
    pub actor: Actor,
    /// What registering answered (`created` is false for a returning member; `referral` is set
    /// when the launch carried `ref_<code>`).
    pub registration: Registration,
    pub member: MemberView,
}

impl Loyalty {
    /// Sets (`Some`) or removes (`None`) a program's launch secret for a platform.
    pub async fn set_launch_secret(
        &self,
        program: &Program,
        platform: &str,
        secret: Option<&str>,
    ) -> DomainResult<()> {
        let Some(secret) = secret.map(str::trim) else {
            launch_secrets::Entity::delete_many()
                .filter(launch_secrets::Column::ProgramId.eq(program.id))
                .filter(launch_secrets::Column::Platform.eq(platform))
                .exec(self.db())
                .await?;
            return Ok(());
        };
        validate_secret(platform, secret)?;
        let row = launch_secrets::ActiveModel {
            program_id: Set(program.id),
            platform: Set(platform.to_owned()),
            secret: Set(secret.to_owned()),
            updated_at: Set(self.now()),
            ..Default::default()
        };
        launch_secrets::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    launch_secrets::Column::ProgramId,
                    launch_secrets::Column::Platform,
                ])
                .update_columns([
                    launch_secrets::Column::Secret,
                    launch_secrets::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.db())
            .await?;
        Ok(())
    }

    /// Whether the program accepts launches from `platform`.
    pub async fn has_launch_secret(&self, program: &Program, platform: &str) -> DomainResult<bool> {
        Ok(self.launch_secret(program, platform).await?.is_some())
    }

    async fn launch_secret(
        &self,
        program: &Program,
        platform: &str,
    ) -> DomainResult<Option<launch_secrets::Model>> {
        Ok(launch_secrets::Entity::find()
            .filter(launch_secrets::Column::ProgramId.eq(program.id))
            .filter(launch_secrets::Column::Platform.eq(platform))
            .one(self.db())
            .await?)
    }

    /// Verifies a launch payload for `program` and returns the member it speaks for, joining
    /// and registering them on their first launch. A `start_param` of `ref_<code>` is the
    /// referral code of that registration (refusals are reported, never fatal).
    pub async fn launch(
        &self,
        program: &str,
        verifier: &dyn LaunchVerifier,
        payload: &str,
    ) -> DomainResult<Launch> {
        let program = self.program(program).await?;
        let platform = verifier.platform();
        let secret = self
            .launch_secret(&program, platform)
            .await?
            .ok_or_else(|| {
                DomainError::Unauthenticated(format!(
                    "program `{}` does not accept {platform} launches: no secret is configured",
                    program.external_id
                ))
            })?;
        let user = verifier
            .verify(payload, &secret.secret, self.now())
            .map_err(|err| DomainError::Unauthenticated(err.to_string()))?;
        let actor = Actor {
            program: program.external_id.clone(),
            role: Role::Member,
            subject: format!("{platform}-{}", user.platform_user_id),
        };
        let member_actor = actor.as_member()?;
        let referral_code = user
            .start_param
            .as_deref()
            .filter(|p| p.starts_with("ref_"));
        let registration = self
            .register(&member_actor, user.display_name.as_deref(), referral_code)
            .await?;
        let member = self
            .me(&member_actor)
            .await?
            .ok_or_else(|| DomainError::internal("a registered member was not found"))?;
        Ok(Launch {
            actor,
            registration,
            member,
        })
    }
}

fn validate_secret(platform: &str, secret: &str) -> DomainResult<()> {
    let ok = match platform {
        // `123456789:AAE…`: the bot id, a colon, and the key.
        "tg" => secret.split_once(':').is_some_and(|(id, key)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }),
        _ => !secret.is_empty() && !secret.chars().any(char::is_whitespace),
    };
    if ok && secret.len() <= 256 {
        Ok(())
    } else {
        Err(DomainError::validation(format!(
            "not a valid {platform} secret (a Telegram bot token looks like `123456789:AAE…`)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:TEST-bot-token";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn verifier() -> TelegramVerifier {
        TelegramVerifier {
            max_age: Duration::hours(24),
        }
    }

    fn fields(auth_date: &str) -> Vec<(&'static str, String)> {
        vec![
            ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc".into()),
            (
                "user",
                r#"{"id":279058397,"first_name":"Vladislav","last_name":"Kibenko","username":"vdkfrost","language_code":"ru"}"#.into(),
            ),
            ("auth_date", auth_date.into()),
            ("start_param", "ref_ABC123".into()),
        ]
    }

    fn signed(fields: &[(&'static str, String)]) -> String {
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sign_telegram_init_data(&borrowed, TOKEN)
    }

    #[test]
    fn a_signed_payload_verifies() {
        let data = signed(&fields("1800000000"));
        let user = verifier().verify(&data, TOKEN, now()).unwrap();
        assert_eq!(user.platform_user_id, "279058397");
        assert_eq!(user.display_name.as_deref(), Some("Vladislav Kibenko"));
        assert_eq!(user.start_param.as_deref(), Some("ref_ABC123"));
    }

    /// A known-good vector computed independently (Python's hmac module) so that a mistake
    /// shared by the signer and the verifier cannot hide.
    /// A vector computed independently, with Python's hmac module, so that a mistake shared by
    /// our signer and our verifier cannot hide:
    /// `hmac.new(hmac.new(b"WebAppData", TOKEN, sha256).digest(),
    ///           b'auth_date=1800000000\nuser={"id":42}', sha256).hexdigest()`
    #[test]
    fn matches_an_independent_computation() {
        let data = "auth_date=1800000000&user=%7B%22id%22%3A42%7D&hash=\
                    8fd34e9b98337f5d3e93cefb88f3e59b9e8a930183d0928066b6e8bbba29335e";
        let user = verifier().verify(data, TOKEN, now()).unwrap();
        assert_eq!(user.platform_user_id, "42");
        assert_eq!(user.display_name, None);
    }

    #[test]
    fn refusals() {
        let v = verifier();
        let good = fields("1800000000");

        let mut tampered = good.clone();
        let data = signed(&tampered);
        let data = data.replace("ref_ABC123", "ref_EVIL99");
        assert_eq!(
            v.verify(&data, TOKEN, now()),
            Err(LaunchError::BadSignature)
        );

        tampered[2].1 = "1800000000".into();
        let data = signed(&tampered);
        assert_eq!(
            v.verify(&data, "123456:another-bot", now()),
            Err(LaunchError::BadSignature)
        );

        let without_hash = data.split("&hash=").next().unwrap().to_string();
        assert_eq!(
            v.verify(&without_hash, TOKEN, now()),
            Err(LaunchError::MissingHash)
        );
        assert_eq!(
            v.verify(&format!("{without_hash}&hash=zz"), TOKEN, now()),
            Err(LaunchError::BadSignature)
        );

        let stale = signed(&fields(&(1_800_000_000 - 86_401).to_string()));
        assert_eq!(
            v.verify(&stale, TOKEN, now()),
            Err(LaunchError::Expired(86_400))
        );
        let future = signed(&fields(&(1_800_000_000 + 3_600).to_string()));
        assert_eq!(
            v.verify(&future, TOKEN, now()),
            Err(LaunchError::FromTheFuture)
        );

        let no_user: Vec<_> = good.iter().filter(|(k, _)| *k != "user").cloned().collect();
        assert_eq!(
            v.verify(&signed(&no_user), TOKEN, now()),
            Err(LaunchError::MissingUser)
        );

        assert_eq!(v.verify("", TOKEN, now()), Err(LaunchError::Size));
        let twice = format!("{}&auth_date=1", signed(&good));
        assert!(matches!(
            v.verify(&twice, TOKEN, now()),
            Err(LaunchError::Malformed(_))
        ));
    }
}
