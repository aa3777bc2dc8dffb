use super::memory::{Board, MemoryBoards};
use super::*;

#[test]
fn buckets_follow_the_program_timezone() {
    let tz: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
    // 23:59 and 00:01 local (UTC+7) on either side of Sunday 2026-11-29 → Monday 2026-11-30.
    let before = "2026-11-29T16:59:00Z".parse().unwrap();
    let after = "2026-11-29T17:01:00Z".parse().unwrap();
    assert_eq!(Bucket::at(Period::Day, tz, before).name(), "DAY:2026-11-29");
    assert_eq!(Bucket::at(Period::Day, tz, after).name(), "DAY:2026-11-30");
    assert_eq!(
        Bucket::at(Period::Week, tz, before).name(),
        "WEEK:2026-11-23"
    );
    assert_eq!(
        Bucket::at(Period::Week, tz, after).name(),
        "WEEK:2026-11-30"
    );
    assert_eq!(
        Bucket::at(Period::Month, tz, before).name(),
        "MONTH:2026-11-01"
    );
    assert_eq!(
        Bucket::at(Period::Month, tz, after).name(),
        "MONTH:2026-11-01"
    );
    assert_eq!(Bucket::at(Period::AllTime, tz, after).name(), "ALL_TIME");
    let month = Bucket::at(Period::Month, tz, before);
    assert_eq!(
        month.starts_at(tz).unwrap(),
        "2026-10-31T17:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        month.ends_at(tz).unwrap(),
        "2026-11-30T17:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        month.expires_at(tz).unwrap(),
        "2026-12-01T17:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp()
    );
    assert_eq!(Bucket::at(Period::AllTime, tz, after).expires_at(tz), None);
}

#[test]
fn ties_go_to_the_lower_member_id_and_ranks_are_positions() {
    let board = Board::from_points([(7, 500), (3, 500), (9, 900), (4, 100), (5, 0), (6, -10)]);
    let snapshot = board.snapshot(10, Some(7));
    assert_eq!(snapshot.top, vec![(9, 900), (3, 500), (7, 500), (4, 100)]);
    assert_eq!(snapshot.me, Some((3, 500)));
    assert_eq!(
        snapshot.around,
        vec![(1, 9, 900), (2, 3, 500), (3, 7, 500), (4, 4, 100)]
    );
    // Nothing earned: no rank, nothing around.
    let nobody = board.snapshot(2, Some(5));
    assert_eq!(nobody.top, vec![(9, 900), (3, 500)]);
    assert_eq!(nobody.me, None);
    assert!(nobody.around.is_empty());
}

#[test]
fn around_is_two_above_and_two_below() {
    let board = Board::from_points((1..=10).map(|id| (id, 1000 - id)));
    let snapshot = board.snapshot(1, Some(6));
    assert_eq!(snapshot.me, Some((6, 994)));
    let ranks: Vec<u64> = snapshot.around.iter().map(|(r, _, _)| *r).collect();
    assert_eq!(ranks, vec![4, 5, 6, 7, 8]);
}

fn cell(name: &str) -> Cell {
    Cell {
        name: name.into(),
        expires_at: None,
    }
}

fn change(member_id: i64, from: i64, to: i64, delta: i64) -> Change {
    Change {
        member_id,
        from,
        to,
        deltas: vec![(cell("ALL_TIME"), delta)],
        now: 0,
    }
}

#[tokio::test]
async fn versions_make_updates_and_rebuilds_commute() {
    let boards = MemoryBoards::default();
    // Not built yet: the caller must read the member from the ledger.
    assert_eq!(
        boards.apply(1, &change(1, 0, 1, 100)).await.unwrap(),
        Applied::NotBuilt
    );
    let cells = [cell("ALL_TIME")];
    let figures = |version, points| Figures {
        member_id: 1,
        version,
        points: vec![points],
    };
    boards
        .merge(1, &cells, &[figures(1, 100)], 0)
        .await
        .unwrap();
    boards.mark_built(1).await.unwrap();
    // In order: applied. Repeated: ignored. With a gap: refused.
    assert_eq!(
        boards.apply(1, &change(1, 1, 2, 50)).await.unwrap(),
        Applied::Done
    );
    assert_eq!(
        boards.apply(1, &change(1, 1, 2, 50)).await.unwrap(),
        Applied::AlreadyIncluded
    );
    assert_eq!(
        boards.apply(1, &change(1, 3, 4, 10)).await.unwrap(),
        Applied::OutOfOrder
    );
    // A stale rebuild (version 1) never overwrites newer figures; a newer one does.
    boards
        .merge(1, &cells, &[figures(1, 100)], 0)
        .await
        .unwrap();
    let read = boards.read(1, &cells[0], 10, Some(1)).await.unwrap();
    assert_eq!(read.unwrap().me, Some((1, 150)));
    boards
        .merge(1, &cells, &[figures(4, 160)], 0)
        .await
        .unwrap();
    let read = boards.read(1, &cells[0], 10, Some(1)).await.unwrap();
    assert_eq!(read.unwrap().me, Some((1, 160)));
    // Another program's board is its own (and not built).
    assert_eq!(boards.read(2, &cells[0], 10, None).await.unwrap(), None);
}

#[test]
fn only_points_earns_and_reversals_count() {
    let posting = |account, kind| Posting {
        id: 1,
        member_id: 1,
        account,
        amount: Points::from_minor(100),
        kind,
        source: None,
        purpose: None,
        ref_type: None,
        ref_id: None,
        rule_id: None,
        ruleset_version: None,
        member_version: 1,
        expires_at: None,
        note: None,
        created_at: Utc::now(),
        balance_after: None,
    };
    assert!(counts(&posting(Account::Points, Kind::Earn)));
    assert!(counts(&posting(Account::Points, Kind::Reversal)));
    for kind in [Kind::Spend, Kind::Refund, Kind::Expire, Kind::Adjust] {
        assert!(!counts(&posting(Account::Points, kind)));
    }
    assert!(!counts(&posting(Account::Qualification, Kind::Earn)));
    assert!(!counts(&posting(Account::Spins, Kind::Earn)));
}
