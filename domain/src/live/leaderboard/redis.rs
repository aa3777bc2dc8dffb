//! Redis backend: one sorted set per program and period bucket
//! (`{prefix}lb:{program}:DAY:2026-11-23`, `…:WEEK:2026-11-16`, `…:MONTH:2026-11-01`,
//! `…:ALL_TIME`), each expiring one [`super::GRACE`] after its period ends (a relative `EXPIRE`
//! from the service's clock, so skew between servers and Redis does not matter); a hash of
//! member posting counters (`…:versions`) and a marker (`…:built`) set when a rebuild finished;
//! `{prefix}lb:applied` is the catch-up watermark (the ledger id every board has caught up to).
//!
//! Score = −points in hundredths and member = the id zero-padded to 19 digits, so Redis's own
//! order (score ascending, then member bytes ascending) is points descending, then lower id
//! first. Every write is one Lua script, so a board and the version hash move together.
//!
//! Every call goes through the store's breaker: with Redis away each one fails at once (the
//! caller marks the boards for a rebuild, or reads the database) instead of waiting.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::store::{Breaker, CallError, RedisHandle, CALL_TIMEOUT};

use super::{Applied, BoardError, BoardResult, Boards, Cell, Change, Figures, Snapshot, AROUND};

/// KEYS: built, versions, boards…; ARGV: member, from, to, then (−delta, ttl secs|0) per board.
/// Returns 0 done, 1 already included, 2 out of order, 3 not built.
const APPLY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 3 end
local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if stored >= tonumber(ARGV[3]) then return 1 end
if stored ~= tonumber(ARGV[2]) then return 2 end
for i = 3, #KEYS do
  local at = 4 + 2 * (i - 3)
  redis.call('ZINCRBY', KEYS[i], ARGV[at], ARGV[1])
  if ARGV[at + 1] ~= '0' then redis.call('EXPIRE', KEYS[i], ARGV[at + 1]) end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 0
";

/// KEYS: versions, boards…; ARGV: ttl secs|0 per board, then per member: member, version,
/// −points per board ('0' removes). Writes a member only over an older version (or none).
const MERGE: &str = r"
local k = #KEYS - 1
local i = k + 1
while i <= #ARGV do
  local member = ARGV[i]
  local stored = redis.call('HGET', KEYS[1], member)
  if (not stored) or tonumber(stored) < tonumber(ARGV[i + 1]) then
    for j = 1, k do
      local score = ARGV[i + 1 + j]
      if score == '0' then
        redis.call('ZREM', KEYS[1 + j], member)
      else
        redis.call('ZADD', KEYS[1 + j], score, member)
      end
    end
    redis.call('HSET', KEYS[1], member, ARGV[i + 1])
  end
  i = i + 2 + k
end
for j = 1, k do
  if ARGV[j] ~= '0' and redis.call('EXISTS', KEYS[1 + j]) == 1 then
    redis.call('EXPIRE', KEYS[1 + j], ARGV[j])
  end
end
return 0
";

/// KEYS: built, board; ARGV: first, member|'', around. Nil when not built; else
/// {top, {rank, score} or {}, first rank of near, near}; members with points ≤ 0 are unranked.
const READ: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local top = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(0', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local me = {}
local near = {}
local lo = 0
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if score and tonumber(score) < 0 then
    local rank = redis.call('ZRANK', KEYS[2], ARGV[2])
    me = {tostring(rank), score}
    local around = tonumber(ARGV[3])
    lo = math.max(0, rank - around)
    near = redis.call('ZRANGE', KEYS[2], lo, rank + around, 'WITHSCORES')
  end
end
return {top, me, tostring(lo), near}
";

/// KEYS: built, versions; ARGV: members. Nil when not built; else each member's version or nil.
const VERSIONS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HMGET', KEYS[2], unpack(ARGV))
";

/// KEYS: watermark; ARGV: id. Moves the watermark up only.
const ADVANCE: &str = r"
local at = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > at then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
";

pub(crate) struct RedisBoards {
    conn: ConnectionManager,
    prefix: String,
    breaker: Breaker,
}

fn member_field(id: i64) -> String {
    format!("{id:019}")
}

fn failed(err: CallError) -> BoardError {
    BoardError(err.to_string())
}

/// Seconds the board has left at `now` (at least 1); `0` = keep for ever.
fn ttl(cell: &Cell, now: i64) -> String {
    match cell.expires_at {
        Some(at) => (at - now).max(1).to_string(),
        None => "0".to_owned(),
    }
}

/// Scores are −points in hundredths, integral and far below 2^53, so `f64` is exact.
fn points_of(score: &str) -> BoardResult<i64> {
    let value: f64 = score
        .parse()
        .map_err(|_| BoardError(format!("bad score `{score}`")))?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(-(value.round() as i64))
}

fn member_of(field: &str) -> BoardResult<i64> {
    field
        .parse()
        .map_err(|_| BoardError(format!("bad member `{field}`")))
}

/// `[member, score, member, score, …]` → (member id, points).
fn pairs(flat: &[String]) -> BoardResult<Vec<(i64, i64)>> {
    flat.chunks(2)
        .filter_map(|pair| match pair {
            [member, score] => Some((member, score)),
            _ => None,
        })
        .map(|(member, score)| Ok((member_of(member)?, points_of(score)?)))
        .collect()
}

impl RedisBoards {
    pub fn new(redis: RedisHandle) -> Self {
        RedisBoards {
            conn: redis.conn,
            prefix: redis.prefix,
            breaker: redis.breaker,
        }
    }

    /// One command (or script) through the breaker.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> BoardResult<T> {
        let mut conn = self.conn.clone();
        self.breaker
            .call(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn))
            .await
            .map_err(failed)
    }

    fn key(&self, program_id: i64, name: &str) -> String {
        format!("{}lb:{program_id}:{name}", self.prefix)
    }

    /// Not under any program's keys, so clearing a program keeps it.
    fn watermark_key(&self) -> String {
        format!("{}lb:applied", self.prefix)
    }
}

type Read = Option<(Vec<String>, Vec<String>, String, Vec<String>)>;

#[async_trait]
impl Boards for RedisBoards {
    async fn apply(&self, program_id: i64, change: &Change) -> BoardResult<Applied> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(APPLY)
            .arg(2 + change.deltas.len())
            .arg(self.key(program_id, "built"))
            .arg(self.key(program_id, "versions"));
        for (cell, _) in &change.deltas {
            cmd.arg(self.key(program_id, &cell.name));
        }
        cmd.arg(member_field(change.member_id))
            .arg(change.from)
            .arg(change.to);
        for (cell, delta) in &change.deltas {
            cmd.arg((-delta).to_string()).arg(ttl(cell, change.now));
        }
        let outcome: i64 = self.run(&cmd).await?;
        Ok(match outcome {
            0 => Applied::Done,
            1 => Applied::AlreadyIncluded,
            2 => Applied::OutOfOrder,
            _ => Applied::NotBuilt,
        })
    }

    async fn merge(
        &self,
        program_id: i64,
        cells: &[Cell],
        figures: &[Figures],
        now: i64,
    ) -> BoardResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(MERGE)
            .arg(1 + cells.len())
            .arg(self.key(program_id, "versions"));
        for cell in cells {
            cmd.arg(self.key(program_id, &cell.name));
        }
        for cell in cells {
            cmd.arg(ttl(cell, now));
        }
        for member in figures {
            cmd.arg(member_field(member.member_id)).arg(member.version);
            for points in &member.points {
                cmd.arg(if *points > 0 {
                    (-points).to_string()
                } else {
                    "0".to_owned()
                });
            }
        }
        self.run::<i64>(&cmd).await?;
        Ok(())
    }

    async fn mark_built(&self, program_id: i64) -> BoardResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(program_id, "built")).arg("1");
        self.run(&cmd).await
    }

    async fn clear(&self, program_id: i64) -> BoardResult<()> {
        let pattern = self.key(program_id, "*");
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let (next, keys): (u64, Vec<String>) = self.run(&scan).await?;
            if !keys.is_empty() {
                let mut del = redis::cmd("DEL");
                del.arg(keys);
                self.run::<()>(&del).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn versions(
        &self,
        program_id: i64,
        members: &[i64],
    ) -> BoardResult<Option<Vec<Option<i64>>>> {
        if members.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(VERSIONS)
            .arg(2)
            .arg(self.key(program_id, "built"))
            .arg(self.key(program_id, "versions"));
        for member in members {
            cmd.arg(member_field(*member));
        }
        self.run(&cmd).await
    }

    async fn watermark(&self) -> BoardResult<Option<i64>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.watermark_key());
        self.run(&cmd).await
    }

    async fn advance_watermark(&self, to: i64) -> BoardResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADVANCE).arg(1).arg(self.watermark_key()).arg(to);
        self.run::<i64>(&cmd).await?;
        Ok(())
    }

    async fn read(
        &self,
        program_id: i64,
        cell: &Cell,
        first: usize,
        member_id: Option<i64>,
    ) -> BoardResult<Option<Snapshot>> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(READ)
            .arg(2)
            .arg(self.key(program_id, "built"))
            .arg(self.key(program_id, &cell.name))
            .arg(first)
            .arg(member_id.map(member_field).unwrap_or_default())
            .arg(AROUND);
        let read: Read = self.run(&cmd).await?;
        let Some((top, me, low, near)) = read else {
            return Ok(None);
        };
        let me = match me.as_slice() {
            [rank, score] => {
                let rank: u64 = rank
                    .parse()
                    .map_err(|_| BoardError(format!("bad rank `{rank}`")))?;
                Some((rank + 1, points_of(score)?))
            }
            _ => None,
        };
        let low: u64 = low
            .parse()
            .map_err(|_| BoardError(format!("bad rank `{low}`")))?;
        Ok(Some(Snapshot {
            top: pairs(&top)?,
            me,
            around: pairs(&near)?
                .into_iter()
                .zip(low + 1..)
                .filter(|((_, points), _)| *points > 0)
                .map(|((member, points), rank)| (rank, member, points))
                .collect(),
        }))
    }

    fn available(&self) -> bool {
        !self.breaker.is_open()
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
