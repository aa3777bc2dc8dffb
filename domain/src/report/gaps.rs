//! Distinct member counts as sums: each member-day of a kind is counted in the cell (day, gap),
//! `gap` being the days since the member's previous day of that kind (`0`: none before). A member
//! has a day in `[a, b]` exactly when their first day in it has its previous day before `a`, so
//!
//! ```text
//! members with a day in [a, b] = Σ n over cells with a ≤ day ≤ b and (gap = 0 or day − gap < a)
//! ```
//!
//! for any window, read from `report_gaps` in cells that grow with days × distinct gaps, not
//! with members. Pure: the folder computes what a member's new days change ([`delta`]), the
//! report sums ([`count`] is the same sum, for the tests).

use std::collections::{BTreeMap, BTreeSet};

/// Cell changes: `(day, gap)` → members added (negative: moved away).
pub type Cells = BTreeMap<(i64, i64), i64>;

/// The cells of one member's days: each day with its gap to the one before.
pub fn chain(days: &BTreeSet<i64>) -> impl Iterator<Item = (i64, i64)> + '_ {
    let mut previous = None;
    days.iter().map(move |day| {
        let gap = previous.map_or(0, |p| day - p);
        previous = Some(*day);
        (*day, gap)
    })
}

/// Adds to `cells` what giving a member the days `added` changes, when `before` holds their
/// days so far — or only their first and last day, when no added day falls strictly between
/// them ([`ends_suffice`]): the cells an added day touches are those of its neighbours, which
/// are then the ends.
pub fn delta(before: &BTreeSet<i64>, added: &BTreeSet<i64>, cells: &mut Cells) {
    let mut merged = before.clone();
    merged.extend(added.iter().copied());
    let mut change = Cells::new();
    for cell in chain(&merged) {
        *change.entry(cell).or_default() += 1;
    }
    for cell in chain(before) {
        *change.entry(cell).or_default() -= 1;
    }
    for (cell, n) in change {
        let total = cells.entry(cell).or_default();
        *total += n;
        if *total == 0 {
            cells.remove(&cell);
        }
    }
}

/// Whether a member's first and last day are all [`delta`] needs to add `added`: no added day
/// lies strictly between them.
pub fn ends_suffice(first: i64, last: i64, added: &BTreeSet<i64>) -> bool {
    last - first < 2 || added.range(first + 1..last).next().is_none()
}

/// The members with a day in `[from, to]`, from the cells.
pub fn count(cells: &Cells, from: i64, to: i64) -> i64 {
    cells
        .range((from, i64::MIN)..=(to, i64::MAX))
        .filter(|((day, gap), _)| *gap == 0 || day - gap < from)
        .map(|(_, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(days: &[i64]) -> BTreeSet<i64> {
        days.iter().copied().collect()
    }

    #[test]
    fn a_day_between_two_splits_their_gap() {
        let mut cells = Cells::new();
        delta(&set(&[]), &set(&[10, 20]), &mut cells);
        assert_eq!(cells, Cells::from([((10, 0), 1), ((20, 10), 1)]));
        let mut change = Cells::new();
        delta(&set(&[10, 20]), &set(&[14]), &mut change);
        assert_eq!(
            change,
            Cells::from([((14, 4), 1), ((20, 6), 1), ((20, 10), -1)])
        );
        // A day already there changes nothing.
        let mut none = Cells::new();
        delta(&set(&[10, 20]), &set(&[20]), &mut none);
        assert!(none.is_empty());
    }

    proptest! {
        /// Folded in any order and in any batches, with only the ends known whenever they
        /// suffice, the cells count every window's members exactly.
        #[test]
        fn cells_count_every_window_exactly(
            members in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::btree_set(-50i64..400, 0..8),
                    1..5,
                ),
                1..6,
            ),
            from in -60i64..410,
            length in 0i64..200,
        ) {
            let to = from + length;
            let mut cells = Cells::new();
            let mut direct = 0;
            for batches in &members {
                let mut days = BTreeSet::new();
                for added in batches {
                    let before = match (days.first(), days.last()) {
                        (Some(&first), Some(&last)) if ends_suffice(first, last, added) => {
                            set(&[first, last])
                        }
                        _ => days.clone(),
                    };
                    delta(&before, added, &mut cells);
                    days.extend(added.iter().copied());
                }
                direct += i64::from(days.range(from..=to).next().is_some());
            }
            prop_assert!(cells.values().all(|n| *n > 0));
            prop_assert_eq!(count(&cells, from, to), direct);
        }
    }
}
