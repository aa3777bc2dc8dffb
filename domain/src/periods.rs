//! Calendar arithmetic in the program's timezone: "a day" is a local calendar day, so a DST
//! change day is one day (23 or 25 hours long) and the client's clock never matters.

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::DomainError;

pub fn parse_timezone(name: &str) -> Result<Tz, DomainError> {
    name.parse::<Tz>()
        .map_err(|_| DomainError::validation(format!("unknown IANA timezone `{name}`")))
}

/// The program-local calendar date of an instant.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The first instant of a local date (handles days that start inside a DST gap).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Midnight skipped by a DST jump: the day starts at the first existing minute.
            (1..=180)
                .find_map(|minutes| {
                    tz.from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
        }
    }
}

/// Start of the ISO week (Monday) containing `date`.
pub fn week_start(date: NaiveDate) -> NaiveDate {
    date - Days::new(u64::from(date.weekday().num_days_from_monday()))
}

pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// The instants at which the current local day, week and month began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub today: NaiveDate,
    pub day_start: DateTime<Utc>,
    pub week_start: DateTime<Utc>,
    pub month_start: DateTime<Utc>,
    pub next_day_start: DateTime<Utc>,
}

impl Windows {
    pub fn at(tz: Tz, now: DateTime<Utc>) -> Windows {
        let today = local_date(tz, now);
        let tomorrow = today.checked_add_days(Days::new(1)).unwrap_or(today);
        Windows {
            today,
            day_start: start_of_day(tz, today),
            week_start: start_of_day(tz, week_start(today)),
            month_start: start_of_day(tz, month_start(today)),
            next_day_start: start_of_day(tz, tomorrow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dst_change_days_are_one_day() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: clocks jump 02:00 → 03:00, the day has 23 hours.
        let w = Windows::at(tz, "2026-03-29T20:00:00Z".parse().unwrap());
        assert_eq!(w.today, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        assert_eq!((w.next_day_start - w.day_start).num_hours(), 23);
        // 2026-10-25: clocks fall back, the day has 25 hours.
        let w = Windows::at(tz, "2026-10-25T12:00:00Z".parse().unwrap());
        assert_eq!((w.next_day_start - w.day_start).num_hours(), 25);
    }

    #[test]
    fn day_that_starts_in_a_gap_starts_at_first_valid_instant() {
        // America/Santiago skips midnight on DST start (2026-09-06 00:00 → 01:00).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = start_of_day(tz, date);
        assert_eq!(local_date(tz, start), date);
        assert_eq!(
            local_date(tz, start - chrono::Duration::seconds(1)),
            date.pred_opt().unwrap()
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(
            week_start(sunday),
            NaiveDate::from_ymd_opt(2026, 11, 16).unwrap()
        );
    }
}
