//! Who did what on which local day, as bitmaps: each member's record of days per kind, which the
//! folder reads by key to place a late day between days already folded (`gaps`), and which a
//! report checks a member of the unfolded tail against. Pure: the folder writes [`Words`] rows,
//! the report and the folder test them. No report scans these rows: distinct counts are sums
//! over `report_gaps` (see `super::gaps`).
//!
//! Days are counted from 1970-01-01 and cut into spans of [`SPAN_DAYS`] days. A row of
//! `report_member_spans` holds one member's days of one kind ([`Mark`]) in its span (`l0..l5`)
//! and in the next span (`h0..h5`); each day is written into two rows. A window of at most
//! `SPAN_DAYS + 1` days (every report period: at most 366) lies within one span and the next, so
//! whether a member has a day in it is one bit test over one row.

use chrono::NaiveDate;

/// Days per span: six 64-bit words.
pub const SPAN_DAYS: i64 = 384;
/// Words per half row.
pub const WORDS: usize = 6;
/// The columns of a row, in [`Words`] order.
pub const COLUMNS: [&str; 2 * WORDS] = [
    "l0", "l1", "l2", "l3", "l4", "l5", "h0", "h1", "h2", "h3", "h4", "h5",
];

/// What a row's bits record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mark {
    /// Any ledger posting (the report's "active" members).
    Active,
    /// An order (members' purchases; refunds do not unmake it).
    Purchase,
    /// An earn paid by the campaign (rule) with this id.
    Rule(i64),
}

impl Mark {
    /// The `what` column.
    pub fn code(self) -> String {
        match self {
            Mark::Active => "A".into(),
            Mark::Purchase => "P".into(),
            Mark::Rule(id) => format!("R{id}"),
        }
    }

    pub fn parse(code: &str) -> Option<Mark> {
        match code {
            "A" => Some(Mark::Active),
            "P" => Some(Mark::Purchase),
            rule => rule.strip_prefix('R')?.parse().ok().map(Mark::Rule),
        }
    }
}

/// The bits of one row: `[0, WORDS)` its span's days, `[WORDS, 2 × WORDS)` the next span's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Words(pub [i64; 2 * WORDS]);

impl Words {
    pub fn or(&mut self, other: &Words) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine |= theirs;
        }
    }

    /// Whether any bit of `mask` is set here.
    pub fn hits(&self, mask: &Words) -> bool {
        self.0.iter().zip(mask.0).any(|(w, m)| w & m != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The numbers ([`day_number`]) of the days of span `base` this row holds (its low half).
    pub fn own_days(&self, base: i64) -> impl Iterator<Item = i64> + '_ {
        self.0[..WORDS]
            .iter()
            .enumerate()
            .flat_map(move |(w, word)| {
                (0..64)
                    .filter(move |bit| word & (1i64 << bit) != 0)
                    .map(move |bit| base * SPAN_DAYS + (w as i64) * 64 + bit)
            })
    }

    /// Sets `day` in a row of span `base`; false when the row does not cover it.
    pub fn set(&mut self, base: i64, day: NaiveDate) -> bool {
        match position(base, day) {
            Some((word, bit)) => {
                self.0[word] |= bit;
                true
            }
            None => false,
        }
    }
}

/// A day's number: days since 1970-01-01 (the `day` of `report_gaps`).
pub fn day_number(day: NaiveDate) -> i64 {
    index(day)
}

fn index(day: NaiveDate) -> i64 {
    (day - NaiveDate::default()).num_days()
}

/// The span a day falls in.
pub fn span_of(day: NaiveDate) -> i64 {
    index(day).div_euclid(SPAN_DAYS)
}

/// The word and bit of `day` in a row of span `base`, if the row covers it.
fn position(base: i64, day: NaiveDate) -> Option<(usize, i64)> {
    let offset = index(day) - base * SPAN_DAYS;
    if !(0..2 * SPAN_DAYS).contains(&offset) {
        return None;
    }
    let word = usize::try_from(offset / 64).ok()?;
    Some((word, 1i64 << (offset % 64)))
}

/// The two rows `day` is written into: its own span's (low half) and the previous span's (high
/// half).
pub fn rows_of(day: NaiveDate) -> [(i64, Words); 2] {
    let span = span_of(day);
    let mut own = Words::default();
    own.set(span, day);
    let mut previous = Words::default();
    previous.set(span - 1, day);
    [(span, own), (span - 1, previous)]
}

/// The days `from..=to` as a mask over rows of span `base`; `None` when the rows do not cover
/// them all (or `to < from`: an empty mask would count nobody silently).
pub fn mask(base: i64, from: NaiveDate, to: NaiveDate) -> Option<Words> {
    if to < from {
        return None;
    }
    position(base, from)?;
    position(base, to)?;
    let mut words = Words::default();
    let mut day = from;
    while day <= to {
        words.set(base, day);
        day = day.succ_opt()?;
    }
    Some(words)
}

/// The span whose rows cover a window starting on `from`.
pub fn base_of(from: NaiveDate) -> i64 {
    span_of(from)
}

/// An SQL literal for a 64-bit word (`i64::MIN` has no literal: it is written as an expression,
/// which PostgreSQL and SQLite both keep a 64-bit integer).
fn literal(word: i64) -> String {
    if word == i64::MIN {
        format!("({} - 1)", i64::MIN + 1)
    } else {
        word.to_string()
    }
}

/// The SQL test "the row has a bit of `mask`" over the row's columns (`FALSE`-like when the mask
/// is empty).
pub fn predicate(mask: &Words) -> String {
    let terms: Vec<String> = COLUMNS
        .iter()
        .zip(mask.0)
        .filter(|(_, m)| *m != 0)
        .map(|(col, m)| format!("({col} & {}) <> 0", literal(m)))
        .collect();
    if terms.is_empty() {
        "1 = 0".into()
    } else {
        format!("({})", terms.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Days;
    use proptest::prelude::*;

    fn day(index: i64) -> NaiveDate {
        NaiveDate::default() + chrono::Duration::days(index)
    }

    #[test]
    fn marks_round_trip_through_their_codes() {
        for mark in [Mark::Active, Mark::Purchase, Mark::Rule(17)] {
            assert_eq!(Mark::parse(&mark.code()), Some(mark));
        }
        assert_eq!(Mark::parse("R"), None);
        assert_eq!(Mark::parse("X1"), None);
    }

    #[test]
    fn a_day_sets_one_bit_in_its_span_and_one_in_the_previous() {
        let [(own, low), (previous, high)] = rows_of(day(0));
        assert_eq!((own, previous), (0, -1));
        assert_eq!(low.0[0], 1);
        assert_eq!(high.0[WORDS], 1);
        let [(own, low), _] = rows_of(day(SPAN_DAYS - 1));
        assert_eq!(own, 0);
        assert_eq!(low.0[WORDS - 1], i64::MIN);
        assert_eq!(span_of(day(-1)), -1);
    }

    #[test]
    fn every_report_window_fits_one_row() {
        // 366 days from the last day of a span still fits; SPAN_DAYS + 2 days may not.
        let from = day(SPAN_DAYS - 1);
        assert!(mask(base_of(from), from, from + Days::new(SPAN_DAYS as u64)).is_some());
        assert!(mask(base_of(from), from, from + Days::new(SPAN_DAYS as u64 + 1)).is_none());
        assert!(mask(0, day(5), day(4)).is_none());
    }

    #[test]
    fn a_row_gives_back_its_own_days() {
        let mut row = Words::default();
        for d in [
            SPAN_DAYS,
            SPAN_DAYS + 63,
            SPAN_DAYS + 64,
            2 * SPAN_DAYS - 1,
            2 * SPAN_DAYS,
        ] {
            row.set(1, day(d));
        }
        let days: Vec<i64> = row.own_days(1).collect();
        assert_eq!(
            days,
            vec![SPAN_DAYS, SPAN_DAYS + 63, SPAN_DAYS + 64, 2 * SPAN_DAYS - 1]
        );
        assert_eq!(day_number(day(-3)), -3);
    }

    #[test]
    fn predicates_are_valid_for_the_sign_bit() {
        let mut words = Words::default();
        words.0[3] = i64::MIN;
        assert_eq!(
            predicate(&words),
            "((l3 & (-9223372036854775807 - 1)) <> 0)"
        );
        assert_eq!(predicate(&Words::default()), "1 = 0");
    }

    proptest! {
        /// The bitmap answer equals the direct one: a member is in a window exactly when one of
        /// their days is.
        #[test]
        fn windows_count_exactly(
            days in proptest::collection::vec(-800i64..1600, 0..30),
            start in -400i64..1200,
            length in 1i64..=366,
        ) {
            let (from, to) = (day(start), day(start + length - 1));
            let base = base_of(from);
            let window = mask(base, from, to).unwrap();
            let mut row = Words::default();
            for d in &days {
                for (span, words) in rows_of(day(*d)) {
                    if span == base {
                        row.or(&words);
                    }
                }
            }
            let direct = days.iter().any(|d| (start..start + length).contains(d));
            prop_assert_eq!(row.hits(&window), direct);
        }
    }
}
