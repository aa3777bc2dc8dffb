//! Which window an instant belongs to. Repeating windows are local to the program's timezone:
//! a week starts Monday 00:00 local, a month on the 1st at 00:00 local (the first existing
//! minute when a DST jump skips midnight), so Sunday 23:59 local still counts for this week.

use chrono::{DateTime, Days, Months, Utc};
use chrono_tz::Tz;

use super::model::Window;
use crate::periods::{local_date, month_start, start_of_day, week_start};

/// One window of a challenge: progress rows are keyed by `key`, which names it in the
/// program's calendar (`fixed`, `week:2026-11-30` (its Monday), `month:2026-12`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpan {
    pub key: String,
    pub starts_at: DateTime<Utc>,
    /// Exclusive.
    pub ends_at: DateTime<Utc>,
}

impl WindowSpan {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }
}

/// The window `at` falls in, or `None` outside a fixed window.
pub fn window_at(window: &Window, tz: Tz, at: DateTime<Utc>) -> Option<WindowSpan> {
    match *window {
        Window::Fixed { from, to } => (from <= at && at < to).then(|| WindowSpan {
            key: "fixed".to_owned(),
            starts_at: from,
            ends_at: to,
        }),
        Window::Weekly => {
            let monday = week_start(local_date(tz, at));
            let next = monday.checked_add_days(Days::new(7))?;
            Some(WindowSpan {
                key: format!("week:{monday}"),
                starts_at: start_of_day(tz, monday),
                ends_at: start_of_day(tz, next),
            })
        }
        Window::Monthly => {
            let first = month_start(local_date(tz, at));
            let next = first.checked_add_months(Months::new(1))?;
            Some(WindowSpan {
                key: format!("month:{}", first.format("%Y-%m")),
                starts_at: start_of_day(tz, first),
                ends_at: start_of_day(tz, next),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Asia/Ho_Chi_Minh is UTC+7: local Monday 2026-11-30 00:00 is 2026-11-29T17:00Z.
    const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;

    #[test]
    fn sunday_23_59_local_is_this_week_and_monday_00_00_local_starts_the_next() {
        let sunday_late = window_at(&Window::Weekly, HCM, t("2026-12-06T16:59:00Z")).unwrap();
        let monday = window_at(&Window::Weekly, HCM, t("2026-12-06T17:00:00Z")).unwrap();
        assert_eq!(sunday_late.key, "week:2026-11-30");
        assert_eq!(sunday_late.starts_at, t("2026-11-29T17:00:00Z"));
        assert_eq!(sunday_late.ends_at, t("2026-12-06T17:00:00Z"));
        assert_eq!(monday.key, "week:2026-12-07");
        assert_eq!(monday.starts_at, sunday_late.ends_at);
        // In UTC both instants are Sunday: the program's timezone decides, not UTC.
        assert_eq!(
            window_at(&Window::Weekly, chrono_tz::UTC, t("2026-12-06T17:00:00Z"))
                .unwrap()
                .key,
            "week:2026-11-30"
        );
    }

    #[test]
    fn the_last_minute_of_the_month_local_is_this_month_and_the_1st_starts_the_next() {
        let last = window_at(&Window::Monthly, HCM, t("2026-12-31T16:59:00Z")).unwrap();
        let first = window_at(&Window::Monthly, HCM, t("2026-12-31T17:00:00Z")).unwrap();
        assert_eq!(last.key, "month:2026-12");
        assert_eq!(last.starts_at, t("2026-11-30T17:00:00Z"));
        assert_eq!(first.key, "month:2027-01");
        assert_eq!(first.starts_at, last.ends_at);
    }

    #[test]
    fn a_week_across_a_dst_change_is_one_week() {
        // Europe/Berlin moves to summer time on Sunday 2026-03-29.
        let tz = chrono_tz::Europe::Berlin;
        let w = window_at(&Window::Weekly, tz, t("2026-03-29T21:59:00Z")).unwrap();
        assert_eq!(w.key, "week:2026-03-23");
        assert_eq!(w.starts_at, t("2026-03-22T23:00:00Z"));
        assert_eq!(w.ends_at, t("2026-03-29T22:00:00Z"));
        assert!(w.contains(t("2026-03-29T21:59:00Z")));
    }

    #[test]
    fn a_fixed_window_is_from_inclusive_to_exclusive() {
        let window = Window::Fixed {
            from: t("2026-12-01T00:00:00Z"),
            to: t("2026-12-08T00:00:00Z"),
        };
        assert_eq!(window_at(&window, HCM, t("2026-11-30T23:59:59Z")), None);
        assert_eq!(
            window_at(&window, HCM, t("2026-12-01T00:00:00Z"))
                .unwrap()
                .key,
            "fixed"
        );
        assert_eq!(window_at(&window, HCM, t("2026-12-08T00:00:00Z")), None);
    }
}
