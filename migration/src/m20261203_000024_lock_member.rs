//! PostgreSQL: `loyalty_lock_member`, the member lock and the locked read in one round trip.
//!
//! Every posting locks its member (`SELECT … FOR UPDATE`) and then reads the member with what it
//! needs (live ruleset and challenge set versions, balance, posting counter, tier multiplier).
//! The read must be a statement of its own: at READ COMMITTED a statement that waited for a row
//! lock reads every other table with the snapshot it started with, so a combined statement could
//! miss the balance the lock's previous holder just committed. A volatile PL/pgSQL function takes
//! a fresh snapshot for each statement it runs, so the lock and the read keep their two
//! statements and their two snapshots, in one round trip from the server (a batch's posting
//! makes one fewer). PL/pgSQL keeps both plans for the session. SQLite needs nothing: its lock
//! and read already go as one script.
//!
//! An earning posting also asks for its member's earn history (how often each of the action's
//! rules paid the member: ever, since the start of today, of the week and of the month, for the
//! event's object, and the points it paid): given the windows and the rules, the read returns
//! it as JSON in the same statement, under the lock, so the rule facts cost no round trip of
//! their own. Without windows (`p_day` NULL) it returns NULL and costs nothing.
//!
//! The read's columns repeat `LOCKED_COLUMNS` and the history repeats the rule facts query of
//! `domain/src/earning/rulebook.rs`; the domain's test
//! `ledger::tests::the_lock_function_waits_and_reads_what_the_holder_committed` holds them equal.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION loyalty_lock_member(
    p_program bigint, p_id bigint, p_external text,
    p_day timestamptz, p_week timestamptz, p_month timestamptz, p_object text, p_rules text)
RETURNS TABLE (
    id bigint, program_id bigint, external_id text, display_name text, referral_code text,
    referrer_id bigint, registered_at timestamptz, joined_at timestamptz, login_streak integer,
    last_login_date text, tier_id bigint, attributes text, multiplier_minor bigint,
    live_version bigint, challenge_version bigint, points_minor bigint, version bigint,
    history text)
LANGUAGE plpgsql VOLATILE AS $body$
#variable_conflict use_column
DECLARE
    locked bigint;
BEGIN
    IF p_id IS NOT NULL THEN
        SELECT m.id INTO locked FROM members m
         WHERE m.program_id = p_program AND m.id = p_id FOR UPDATE;
    ELSE
        SELECT m.id INTO locked FROM members m
         WHERE m.program_id = p_program AND m.external_id = p_external FOR UPDATE;
    END IF;
    IF locked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT m.id, m.program_id, m.external_id::text, m.display_name::text,
           m.referral_code::text, m.referrer_id, m.registered_at, m.joined_at, m.login_streak,
           m.last_login_date::text, m.tier_id, m.attributes,
           COALESCE(t.multiplier_minor, 100)::bigint,
           p.ruleset_version,
           COALESCE((SELECT MAX(s.version) FROM challenge_sets s
                      WHERE s.program_id = m.program_id), 0)::bigint,
           b.balance_minor,
           COALESCE((SELECT MAX(l.member_version) FROM ledger_entries l
                      WHERE l.member_id = m.id), 0)::bigint,
           CASE WHEN p_day IS NULL THEN NULL ELSE (
               SELECT COALESCE(json_agg(json_build_object(
                          'rule_id', h.rule_id, 'lifetime', h.lifetime, 'in_day', h.in_day,
                          'in_week', h.in_week, 'in_month', h.in_month,
                          'on_object', h.on_object, 'lifetime_points', h.lifetime_points)),
                      '[]')::text
                 FROM (SELECT l.rule_id, count(*) AS lifetime,
                              count(*) FILTER (WHERE l.created_at >= p_day) AS in_day,
                              count(*) FILTER (WHERE l.created_at >= p_week) AS in_week,
                              count(*) FILTER (WHERE l.created_at >= p_month) AS in_month,
                              count(*) FILTER (WHERE l.ref_id = p_object) AS on_object,
                              COALESCE(sum(l.amount_minor) FILTER (WHERE l.account = 'POINTS'),
                                       0)::bigint AS lifetime_points
                         FROM ledger_entries l
                        WHERE l.member_id = m.id AND l.kind = 'EARN'
                          AND l.account <> 'QUALIFICATION'
                          AND l.rule_id = ANY (string_to_array(p_rules, ',')::bigint[])
                        GROUP BY l.rule_id) h) END
      FROM members m JOIN programs p ON p.id = m.program_id
      JOIN balances b ON b.member_id = m.id AND b.account = 'POINTS'
      LEFT JOIN tiers t ON t.id = m.tier_id
     WHERE m.id = locked;
END
$body$
"#;

const DOWN: &str = "DROP FUNCTION IF EXISTS \
     loyalty_lock_member(bigint, bigint, text, timestamptz, timestamptz, timestamptz, text, text)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
