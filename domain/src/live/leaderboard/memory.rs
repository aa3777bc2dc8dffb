//! The in-process backend (embedded default, one instance), and the ranking code the database
//! fallback uses: the same order as the Redis sorted sets (points descending, then member id
//! ascending).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Applied, BoardError, BoardResult, Boards, Cell, Change, Figures, Snapshot, AROUND};

/// One board: points by member, and the same pairs ordered for ranking.
#[derive(Debug, Default)]
pub(crate) struct Board {
    points: HashMap<i64, i64>,
    /// (−points, member id): ascending order is the ranking.
    order: BTreeSet<(i64, i64)>,
    expires_at: Option<i64>,
}

impl Board {
    pub fn from_points(points: impl IntoIterator<Item = (i64, i64)>) -> Board {
        let mut board = Board::default();
        for (member, value) in points {
            board.set(member, value);
        }
        board
    }

    fn set(&mut self, member: i64, value: i64) {
        if let Some(old) = self.points.remove(&member) {
            self.order.remove(&(-old, member));
        }
        if value != 0 {
            self.points.insert(member, value);
            self.order.insert((-value, member));
        }
    }

    fn add(&mut self, member: i64, delta: i64) {
        let value = self.points.get(&member).copied().unwrap_or_default();
        self.set(member, value.saturating_add(delta));
    }

    /// Only members with positive points are ranked.
    fn ranked(&self) -> impl Iterator<Item = (u64, i64, i64)> + '_ {
        self.order
            .iter()
            .take_while(|(negative, _)| *negative < 0)
            .zip(1u64..)
            .map(|((negative, member), rank)| (rank, *member, -negative))
    }

    pub fn snapshot(&self, first: usize, member_id: Option<i64>) -> Snapshot {
        let top = self
            .ranked()
            .take(first)
            .map(|(_, member, points)| (member, points))
            .collect();
        let me = member_id.and_then(|member| {
            let points = self.points.get(&member).copied().filter(|p| *p > 0)?;
            let above = self.order.range(..(-points, member)).count();
            Some((above as u64 + 1, points))
        });
        let around = match me {
            Some((rank, _)) => {
                let skip = usize::try_from(rank.saturating_sub(1)).unwrap_or_default();
                self.ranked()
                    .skip(skip.saturating_sub(AROUND))
                    .take(AROUND * 2 + 1)
                    .filter(|(r, _, _)| r.abs_diff(rank) <= AROUND as u64)
                    .collect()
            }
            None => Vec::new(),
        };
        Snapshot { top, me, around }
    }
}

#[derive(Default)]
struct ProgramBoards {
    built: bool,
    versions: HashMap<i64, i64>,
    boards: HashMap<String, Board>,
}

impl ProgramBoards {
    fn board(&mut self, cell: &Cell, now: i64) -> &mut Board {
        self.boards
            .retain(|_, b| b.expires_at.is_none_or(|at| at > now));
        let board = self.boards.entry(cell.name.clone()).or_default();
        board.expires_at = cell.expires_at;
        board
    }
}

#[derive(Default)]
pub(crate) struct MemoryBoards {
    programs: Mutex<HashMap<i64, ProgramBoards>>,
    watermark: Mutex<Option<i64>>,
}

fn poisoned<T>(_: T) -> BoardError {
    BoardError("in-process leaderboard lock poisoned".into())
}

#[async_trait]
impl Boards for MemoryBoards {
    async fn apply(&self, program_id: i64, change: &Change) -> BoardResult<Applied> {
        let mut programs = self.programs.lock().map_err(poisoned)?;
        let program = programs.entry(program_id).or_default();
        if !program.built {
            return Ok(Applied::NotBuilt);
        }
        let stored = program
            .versions
            .get(&change.member_id)
            .copied()
            .unwrap_or_default();
        if stored >= change.to {
            return Ok(Applied::AlreadyIncluded);
        }
        if stored != change.from {
            return Ok(Applied::OutOfOrder);
        }
        for (cell, delta) in &change.deltas {
            program
                .board(cell, change.now)
                .add(change.member_id, *delta);
        }
        program.versions.insert(change.member_id, change.to);
        Ok(Applied::Done)
    }

    async fn merge(
        &self,
        program_id: i64,
        cells: &[Cell],
        figures: &[Figures],
        now: i64,
    ) -> BoardResult<()> {
        let mut programs = self.programs.lock().map_err(poisoned)?;
        let program = programs.entry(program_id).or_default();
        for member in figures {
            let stored = program.versions.get(&member.member_id).copied();
            if stored.is_some_and(|v| v >= member.version) {
                continue;
            }
            for (cell, points) in cells.iter().zip(&member.points) {
                program.board(cell, now).set(member.member_id, *points);
            }
            program.versions.insert(member.member_id, member.version);
        }
        Ok(())
    }

    async fn mark_built(&self, program_id: i64) -> BoardResult<()> {
        let mut programs = self.programs.lock().map_err(poisoned)?;
        programs.entry(program_id).or_default().built = true;
        Ok(())
    }

    async fn clear(&self, program_id: i64) -> BoardResult<()> {
        let mut programs = self.programs.lock().map_err(poisoned)?;
        programs.remove(&program_id);
        Ok(())
    }

    async fn versions(
        &self,
        program_id: i64,
        members: &[i64],
    ) -> BoardResult<Option<Vec<Option<i64>>>> {
        let programs = self.programs.lock().map_err(poisoned)?;
        let Some(program) = programs.get(&program_id).filter(|p| p.built) else {
            return Ok(None);
        };
        Ok(Some(
            members
                .iter()
                .map(|member| program.versions.get(member).copied())
                .collect(),
        ))
    }

    async fn watermark(&self) -> BoardResult<Option<i64>> {
        Ok(*self.watermark.lock().map_err(poisoned)?)
    }

    async fn advance_watermark(&self, to: i64) -> BoardResult<()> {
        let mut watermark = self.watermark.lock().map_err(poisoned)?;
        *watermark = Some(watermark.map_or(to, |at| at.max(to)));
        Ok(())
    }

    async fn read(
        &self,
        program_id: i64,
        cell: &Cell,
        first: usize,
        member_id: Option<i64>,
    ) -> BoardResult<Option<Snapshot>> {
        let programs = self.programs.lock().map_err(poisoned)?;
        let Some(program) = programs.get(&program_id).filter(|p| p.built) else {
            return Ok(None);
        };
        Ok(Some(match program.boards.get(&cell.name) {
            Some(board) => board.snapshot(first, member_id),
            None => Snapshot::default(),
        }))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
