//! From the admin API's JSON to [`Condition`]s: every refusal names the path of the bad field
//! (`conditions[2].amount: must be at least 0.01`). Hand-written rather than serde-derived so
//! that the path and the wording are ours, not the deserializer's.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{
    is_attribute_key, quoted, Condition, TimeOfDay, Weekday, MAX_ACTION_COUNT,
    MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS, MAX_CONDITIONS, MAX_JOINED_WITHIN_DAYS,
    MAX_MIN_QUANTITY, MAX_NTH_PURCHASE, MAX_SET_LEN, MAX_VALUE_CHARS,
};
use crate::earning::rules::Period;
use crate::error::DomainError;
use crate::money::{Money, Points};

/// Validates a rule's conditions, as sent by the admin API (a JSON array's elements).
pub fn validate(inputs: &[Value]) -> Result<Vec<Condition>, DomainError> {
    if inputs.len() > MAX_CONDITIONS {
        return Err(DomainError::validation(format!(
            "conditions: at most {MAX_CONDITIONS} conditions"
        )));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(index, input)| parse_one(input, &format!("conditions[{index}]")))
        .collect()
}

pub(super) fn parse_one(input: &Value, path: &str) -> Result<Condition, DomainError> {
    let Some(map) = input.as_object() else {
        return Err(refuse(path, "must be an object"));
    };
    let mut fields = Fields {
        map,
        path,
        read: vec!["kind"],
    };
    let kind = match map.get("kind") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(refuse(&fields.at("kind"), "must be a string")),
        None => return Err(refuse(&fields.at("kind"), "required")),
    };
    let condition = match kind {
        "orderTotalAtLeast" => Condition::OrderTotalAtLeast {
            amount: fields.money("amount")?,
        },
        "orderTotalBelow" => Condition::OrderTotalBelow {
            amount: fields.money("amount")?,
        },
        "linesWithSku" => Condition::LinesWithSku {
            skus: fields.strings("skus", MAX_VALUE_CHARS)?,
            min_quantity: fields.optional_count("minQuantity", MAX_MIN_QUANTITY)?,
            min_value: fields.optional_money("minValue")?,
        },
        "linesInCategory" => Condition::LinesInCategory {
            categories: fields.strings("categories", MAX_VALUE_CHARS)?,
            min_quantity: fields.optional_count("minQuantity", MAX_MIN_QUANTITY)?,
            min_value: fields.optional_money("minValue")?,
        },
        "tierIn" => Condition::TierIn {
            tier_ids: fields.tier_ids("tierIds")?,
        },
        "dayOfWeekIn" => Condition::DayOfWeekIn {
            days: fields.weekdays("days")?,
        },
        "localTimeBetween" => {
            let from = fields.time("from")?;
            let to = fields.time("to")?;
            if from >= to || from == TimeOfDay::END_OF_DAY {
                return Err(refuse(
                    &fields.at("to"),
                    &format!("must be after from {from} (a window may not cross midnight)"),
                ));
            }
            Condition::LocalTimeBetween { from, to }
        }
        "firstPurchase" => Condition::FirstPurchase,
        "nthPurchase" => Condition::NthPurchase {
            n: fields.count("n", MAX_NTH_PURCHASE)?,
        },
        "joinedWithinDays" => Condition::JoinedWithinDays {
            days: fields.count("days", MAX_JOINED_WITHIN_DAYS)?,
        },
        "objectIdIn" => Condition::ObjectIdIn {
            ids: fields.strings("ids", MAX_VALUE_CHARS)?,
        },
        "objectIdPrefix" => Condition::ObjectIdPrefix {
            prefix: fields.string("prefix", MAX_VALUE_CHARS)?,
        },
        "memberAttributeEquals" => Condition::MemberAttributeEquals {
            key: fields.attribute_key("key")?,
            value: fields.string("value", MAX_ATTRIBUTE_VALUE_CHARS)?,
        },
        "hasBadge" => Condition::HasBadge {
            code: fields.attribute_key("code")?,
        },
        "actionCountAtLeast" => Condition::ActionCountAtLeast {
            count: fields.count("count", MAX_ACTION_COUNT)?,
            period: fields.period("period")?,
        },
        unknown => {
            return Err(refuse(
                &fields.at("kind"),
                &format!("unknown condition {}", quoted(unknown)),
            ))
        }
    };
    fields.no_others()?;
    Ok(condition)
}

fn refuse(path: &str, message: &str) -> DomainError {
    DomainError::validation(format!("{path}: {message}"))
}

/// The fields of one condition object, remembering which ones were read.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn at(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    fn optional(&mut self, field: &'static str) -> Option<&'a Value> {
        self.read.push(field);
        self.map.get(field).filter(|value| !value.is_null())
    }

    fn required(&mut self, field: &'static str) -> Result<&'a Value, DomainError> {
        let path = self.at(field);
        self.optional(field)
            .ok_or_else(|| refuse(&path, "required"))
    }

    /// Refuses fields this kind does not have (`deny_unknown_fields`).
    fn no_others(&self) -> Result<(), DomainError> {
        match self
            .map
            .keys()
            .find(|key| !self.read.contains(&key.as_str()))
        {
            Some(key) => Err(refuse(&self.at(key), "unknown field")),
            None => Ok(()),
        }
    }

    fn money(&mut self, field: &'static str) -> Result<Money, DomainError> {
        let path = self.at(field);
        parse_money(self.required(field)?, &path)
    }

    fn optional_money(&mut self, field: &'static str) -> Result<Option<Money>, DomainError> {
        let path = self.at(field);
        self.optional(field)
            .map(|value| parse_money(value, &path))
            .transpose()
    }

    fn count(&mut self, field: &'static str, max: u32) -> Result<u32, DomainError> {
        let path = self.at(field);
        parse_count(self.required(field)?, &path, max)
    }

    fn optional_count(
        &mut self,
        field: &'static str,
        max: u32,
    ) -> Result<Option<u32>, DomainError> {
        let path = self.at(field);
        self.optional(field)
            .map(|value| parse_count(value, &path, max))
            .transpose()
    }

    fn string(&mut self, field: &'static str, max_chars: usize) -> Result<String, DomainError> {
        let path = self.at(field);
        parse_string(self.required(field)?, &path, max_chars)
    }

    /// A member attribute key, spelled as `setMemberAttributes` accepts it (`[a-z0-9_]`), so a
    /// condition can never name a key no member can hold.
    fn attribute_key(&mut self, field: &'static str) -> Result<String, DomainError> {
        let key = self.string(field, MAX_ATTRIBUTE_KEY_CHARS)?;
        if is_attribute_key(&key) {
            Ok(key)
        } else {
            Err(refuse(&self.at(field), "must be a–z, 0–9 and `_`"))
        }
    }

    /// `"DAY"`, `"WEEK"`, `"MONTH"` or `"LIFETIME"` (as a rule's limit spells it).
    fn period(&mut self, field: &'static str) -> Result<Period, DomainError> {
        const PERIODS: [(&str, Period); 4] = [
            ("DAY", Period::Day),
            ("WEEK", Period::Week),
            ("MONTH", Period::Month),
            ("LIFETIME", Period::Lifetime),
        ];
        let path = self.at(field);
        let value = self.required(field)?;
        let expected = "must be one of DAY, WEEK, MONTH, LIFETIME";
        let text = value.as_str().ok_or_else(|| refuse(&path, expected))?;
        PERIODS
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, period)| *period)
            .ok_or_else(|| {
                refuse(
                    &path,
                    &format!("unknown period {} ({expected})", quoted(text)),
                )
            })
    }

    fn time(&mut self, field: &'static str) -> Result<TimeOfDay, DomainError> {
        let path = self.at(field);
        let value = self.required(field)?;
        let text = value
            .as_str()
            .ok_or_else(|| refuse(&path, "must be a time \"HH:MM\""))?;
        parse_time(text).ok_or_else(|| refuse(&path, &format!("invalid time {}", quoted(text))))
    }

    /// A non-empty, bounded set; each element parsed by `element` with its own path.
    fn set<T: Ord>(
        &mut self,
        field: &'static str,
        element: impl Fn(&Value, &str) -> Result<T, DomainError>,
    ) -> Result<BTreeSet<T>, DomainError> {
        let path = self.at(field);
        let items = self
            .required(field)?
            .as_array()
            .ok_or_else(|| refuse(&path, "must be an array"))?;
        if items.is_empty() {
            return Err(refuse(&path, "must not be empty"));
        }
        if items.len() > MAX_SET_LEN {
            return Err(refuse(&path, &format!("at most {MAX_SET_LEN} values")));
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| element(item, &format!("{path}[{index}]")))
            .collect()
    }

    fn strings(
        &mut self,
        field: &'static str,
        max_chars: usize,
    ) -> Result<BTreeSet<String>, DomainError> {
        self.set(field, |item, path| parse_string(item, path, max_chars))
    }

    fn tier_ids(&mut self, field: &'static str) -> Result<BTreeSet<i64>, DomainError> {
        self.set(field, |item, path| {
            item.as_i64()
                .filter(|id| *id > 0)
                .ok_or_else(|| refuse(path, "must be a tier id (a positive integer)"))
        })
    }

    fn weekdays(&mut self, field: &'static str) -> Result<BTreeSet<Weekday>, DomainError> {
        self.set(field, |item, path| {
            let text = item
                .as_str()
                .ok_or_else(|| refuse(path, "must be a day name (monday to sunday)"))?;
            Weekday::ALL
                .into_iter()
                .find(|day| day.name() == text)
                .ok_or_else(|| {
                    refuse(
                        path,
                        &format!("unknown day {} (monday to sunday)", quoted(text)),
                    )
                })
        })
    }
}

fn parse_money(value: &Value, path: &str) -> Result<Money, DomainError> {
    let text = value
        .as_str()
        .ok_or_else(|| refuse(path, "must be a decimal string like \"50.00\""))?;
    let decimal: Decimal = text
        .parse()
        .map_err(|_| refuse(path, &format!("invalid decimal {}", quoted(text))))?;
    if decimal.normalize().scale() > 2 {
        return Err(refuse(path, "must have at most two fraction digits"));
    }
    let amount = Money::parse(decimal, path)
        .map_err(|_| refuse(path, &format!("must be at most {}", Points::MAX)))?;
    if amount.minor() < 1 {
        return Err(refuse(path, "must be at least 0.01"));
    }
    Ok(amount)
}

fn parse_count(value: &Value, path: &str, max: u32) -> Result<u32, DomainError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| refuse(path, &format!("must be an integer between 1 and {max}")))
}

fn parse_string(value: &Value, path: &str, max_chars: usize) -> Result<String, DomainError> {
    value
        .as_str()
        .filter(|text| !text.is_empty() && text.chars().count() <= max_chars)
        .map(str::to_owned)
        .ok_or_else(|| {
            refuse(
                path,
                &format!("must be a string of 1 to {max_chars} characters"),
            )
        })
}

/// `"HH:MM"`, exactly five characters, `00:00` to `24:00`.
fn parse_time(text: &str) -> Option<TimeOfDay> {
    let (hours, minutes) = text.split_once(':')?;
    let digits = |part: &str| {
        (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u16>().ok())
            .flatten()
    };
    let hours = digits(hours)?;
    if hours > 24 {
        return None;
    }
    TimeOfDay::new(hours, digits(minutes)?)
}
