use sea_orm::entity::prelude::*;

/// A program's secret for one mini-app platform (Telegram: the bot token).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "launch_secrets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    /// `tg`, later `zalo`, `wechat`.
    pub platform: String,
    pub secret: String,
    pub updated_at: DateTimeUtc,
}

// Not derived: a secret must never reach a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchSecret")
            .field("program_id", &self.program_id)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
