//! One cell of a CSV export, typed so that no column can skip the spreadsheet guard (OWASP
//! "CSV injection"): a spreadsheet runs text that starts with `=`, `+`, `-` or `@` as a formula
//! (tab and carriage return can hide such a start), and member names, adjustment reasons, rule
//! and gift labels all come from people. Such text gets a leading `'`, which spreadsheets show
//! as plain text. Numbers stay numbers: `-5.00` must remain a negative amount.

use std::fmt::Display;

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_domain::Points;
use rust_decimal::Decimal;

/// What makes a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A value the server computed and a spreadsheet should read as a number or a date.
pub trait Numeric: Display {}

impl Numeric for i64 {}
impl Numeric for u64 {}
impl Numeric for Decimal {}
impl Numeric for Points {}
impl Numeric for NaiveDate {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Number(String),
}

impl Cell {
    pub fn text(value: impl Into<String>) -> Self {
        Cell::Text(value.into())
    }

    pub fn number(value: impl Numeric) -> Self {
        Cell::Number(value.to_string())
    }

    /// An instant in RFC 3339 (UTC, microseconds).
    pub fn instant(at: DateTime<Utc>) -> Self {
        Cell::Number(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }

    pub fn empty() -> Self {
        Cell::Text(String::new())
    }

    /// The field as written to the file.
    pub fn into_field(self) -> String {
        match self {
            Cell::Number(value) => value,
            Cell::Text(value) if value.starts_with(FORMULA_STARTS) => format!("'{value}"),
            Cell::Text(value) => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_starting_like_a_formula_is_quoted() {
        for (text, field) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+cmd", "'+cmd"),
            ("-2+3", "'-2+3"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
        ] {
            assert_eq!(Cell::text(text).into_field(), field, "{text:?}");
        }
    }

    #[test]
    fn plain_text_is_unchanged() {
        for text in ["Alice", "", "a=b", "1+1", "Goodwill, \"VIP\"\nđặc biệt"] {
            assert_eq!(Cell::text(text).into_field(), text);
        }
    }

    #[test]
    fn numbers_stay_numbers() {
        assert_eq!(Cell::number(Points::from_minor(-500)).into_field(), "-5.00");
        assert_eq!(Cell::number(-7i64).into_field(), "-7");
        assert_eq!(Cell::number(Decimal::new(-25, 2)).into_field(), "-0.25");
        assert_eq!(
            Cell::number(NaiveDate::from_ymd_opt(2026, 5, 10).unwrap()).into_field(),
            "2026-05-10"
        );
    }
}
