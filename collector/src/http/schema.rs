//! OpenAPI schemas of the values the API validates, so the document states exactly what is
//! accepted: text lengths and "no control characters", names without surrounding spaces,
//! ISO 4217 currencies and IANA time zones as enumerations, decimal ranges as patterns.
//! Used with `#[schema(schema_with = …)]`; a `_patch` variant also allows `null` (keep).

use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{RefOr, SchemaFormat};

/// Control characters (Unicode category Cc), refused in every text field.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

fn string(min: usize, max: usize, pattern: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
}

/// Free text of `min` to `max` characters without control characters.
pub fn text(min: usize, max: usize) -> Schema {
    string(min, max, format!("^[^{CONTROL}]*$")).build().into()
}

/// A name: 1 to 64 characters, no control characters, no leading or trailing white space.
pub fn name() -> Schema {
    string(
        1,
        64,
        format!(r"^[^\s{CONTROL}]([^{CONTROL}]*[^\s{CONTROL}])?$"),
    )
    .build()
    .into()
}

fn nullable(schema: Schema) -> Schema {
    OneOfBuilder::new()
        .item(schema)
        .item(ObjectBuilder::new().schema_type(Type::Null).build())
        .build()
        .into()
}

/// [`name`], or `null` to keep the current one.
pub fn name_patch() -> Schema {
    nullable(name())
}

/// An active ISO 4217 currency code.
pub fn currency() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(crate::currency::CURRENCIES.iter().map(|(c, _)| *c)))
        .examples(["EUR"])
        .build()
        .into()
}

/// [`currency`], or `null` to keep (or default).
pub fn currency_patch() -> Schema {
    nullable(currency())
}

/// Every IANA time zone name of the bundled database.
pub fn timezone() -> Schema {
    let mut names: Vec<String> = jiff::tz::db()
        .available()
        .map(|n| n.as_str().to_string())
        .collect();
    names.sort();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .examples(["Europe/Paris"])
        .build()
        .into()
}

/// [`timezone`], or `null` to keep (or default).
pub fn timezone_patch() -> Schema {
    nullable(timezone())
}

/// A decimal from 0 to `max`: a plain decimal string or a whole JSON number.
fn decimal(max: u32, string_pattern: &str) -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(string_pattern))
                .build(),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(max))
                .build(),
        )
        .build()
        .into()
}

/// The fraction of a price (at most 6 decimals) and of watts or grams (at most 3).
const PRICE_FRACTION: &str = r"(\.[0-9]{1,6})?";
const FRACTION: &str = r"(\.[0-9]{1,3})?";

/// Price per kWh: 0 to 1000.
pub fn price() -> Schema {
    decimal(
        1000,
        &format!(r"^(1000(\.0{{1,6}})?|(0|[1-9][0-9]{{0,2}}){PRICE_FRACTION})$"),
    )
}

pub fn price_patch() -> Schema {
    nullable(price())
}

/// Grams CO₂e per kWh: 0 to 5000.
pub fn carbon() -> Schema {
    decimal(
        5000,
        &format!(r"^(5000(\.0{{1,3}})?|(0|[1-9][0-9]{{0,2}}|[1-4][0-9]{{3}}){FRACTION})$"),
    )
}

pub fn carbon_patch() -> Schema {
    nullable(carbon())
}

/// Watts: 0 to 10000.
pub fn watts() -> Schema {
    decimal(
        10_000,
        &format!(r"^(10000(\.0{{1,3}})?|(0|[1-9][0-9]{{0,3}}){FRACTION})$"),
    )
}

pub fn watts_patch() -> Schema {
    nullable(watts())
}

/// An RFC 3339 timestamp.
pub fn timestamp() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .build()
        .into()
}

/// A whole number from `min` to `max`.
pub fn whole(min: i64, max: i64) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .build()
        .into()
}

/// An optional whole number, `null` meaning absent.
pub fn whole_or_null(min: i64, max: i64) -> RefOr<Schema> {
    RefOr::T(
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(min))
            .maximum(Some(max))
            .build()
            .into(),
    )
}

/// One of `values`, or empty (treated as absent), for a query parameter.
pub fn choice(values: &[&str]) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(std::iter::once("").chain(values.iter().copied())))
        .build()
        .into()
}

/// Query parameters, each a function for `#[param(schema_with = …)]`.
pub mod param {
    use super::*;

    /// A text filter: up to 256 characters, no control characters.
    pub fn text() -> Schema {
        super::text(0, crate::http::extract::MAX_QUERY_VALUE_CHARS)
    }

    pub fn status() -> Schema {
        choice(&["active", "idle", "offline", "unknown"])
    }

    pub fn sort() -> Schema {
        choice(&[
            "hostname",
            "site",
            "department",
            "status",
            "last_seen",
            "input_idle",
            "idle_time",
            "idle_energy",
        ])
    }

    pub fn order() -> Schema {
        choice(&["asc", "desc"])
    }

    pub fn attribution() -> Schema {
        choice(&["incurred", "current"])
    }

    pub fn days() -> Schema {
        whole(1, 366)
    }

    pub fn when() -> Schema {
        choice(&["always", "after_hours"])
    }

    pub fn sleep_after() -> Schema {
        whole(
            1,
            i64::from(crate::operations::savings::MAX_SLEEP_AFTER_MINUTES),
        )
    }

    pub fn group_by() -> Schema {
        choice(&["machine", "site", "department"])
    }

    pub fn page() -> Schema {
        whole(1, 1_000_000)
    }

    pub fn per_page() -> Schema {
        whole(1, crate::http::machines::MAX_PER_PAGE)
    }

    pub fn step() -> Schema {
        whole(60, 31_622_400)
    }

    pub fn limit() -> Schema {
        whole(1, 1000)
    }

    /// An RFC 3339 timestamp, or empty (treated as absent).
    pub fn timestamp() -> Schema {
        OneOfBuilder::new()
            .item(super::timestamp())
            .item(choice(&[]))
            .build()
            .into()
    }
}

/// Body fields, each a function for `#[schema(schema_with = …)]`.
pub mod field {
    use super::*;

    /// A site or power profile name given to look one up (1 to 64 characters), or `null`.
    pub fn name_ref_patch() -> Schema {
        nullable(super::text(1, 64))
    }

    /// A department (0 to 100 characters), or `null`.
    pub fn department_patch() -> Schema {
        nullable(super::text(0, 100))
    }

    /// A username as signed in with or created: 1 to 64 letters, digits, `.`, `_`, `-`, `@`.
    pub fn username() -> Schema {
        string(1, 64, "^[A-Za-z0-9._@-]{1,64}$".into())
            .build()
            .into()
    }

    pub fn username_patch() -> Schema {
        nullable(username())
    }

    /// A password to set: 12 to 1024 characters, no NUL.
    pub fn new_password() -> Schema {
        string(12, 1024, r"^[^\u0000]*$".into()).build().into()
    }

    pub fn new_password_patch() -> Schema {
        nullable(new_password())
    }

    /// A password to sign in with: 1 to 1024 characters, no NUL.
    pub fn password() -> Schema {
        string(1, 1024, r"^[^\u0000]*$".into()).build().into()
    }

    /// An API token's name: 1 to 100 characters.
    pub fn token_name() -> Schema {
        super::text(1, 100)
    }

    pub fn expires_in_seconds() -> RefOr<Schema> {
        whole_or_null(60, 316_224_000)
    }

    pub fn max_uses() -> RefOr<Schema> {
        whole_or_null(1, i64::MAX)
    }

    /// A setting in seconds: 0 to one year, or `null` to keep it.
    pub fn seconds_patch() -> RefOr<Schema> {
        whole_or_null(0, 31_622_400)
    }

    /// A setting in seconds that must be positive: 1 to one year, or `null`.
    pub fn positive_seconds_patch() -> RefOr<Schema> {
        whole_or_null(1, 31_622_400)
    }

    /// Weekday names, at least one.
    pub fn weekdays() -> Schema {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::accounting::rates::Weekdays::NAMES)),
            )
            .min_items(Some(1))
            .max_items(Some(7))
            .build()
            .into()
    }

    /// A local time of day `HH:MM` (`24:00` for the end of a day).
    pub fn clock() -> Schema {
        string(5, 5, r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$".into())
            .build()
            .into()
    }

    /// An RFC 3339 moment from which a change applies (absent or `null`: now).
    pub fn effective_from() -> Schema {
        nullable(super::timestamp())
    }

    /// Dates `YYYY-MM-DD`, or `null` to keep.
    pub fn holidays_patch() -> Schema {
        nullable(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String).format(Some(
                    SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Date),
                )))
                .max_items(Some(400))
                .build()
                .into(),
        )
    }

    pub fn bool_patch() -> RefOr<Schema> {
        RefOr::T(
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
                .build()
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_of(schema: Schema) -> String {
        let json = serde_json::to_value(schema).unwrap_or_default();
        json["oneOf"][0]["pattern"]
            .as_str()
            .or(json["pattern"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    fn accepted_by_pattern(schema: Schema, text: &str) -> bool {
        let pattern = pattern_of(schema);
        regex::Regex::new(&pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(text)
    }

    #[test]
    fn decimal_patterns_accept_exactly_what_the_operations_accept() {
        use crate::operations::catalog::{check_range, plain_decimal};
        let candidates = [
            "0",
            "0.12",
            "65",
            "999.999999999999",
            "1000",
            "1000.0",
            "1000.000000000001",
            "1000.0000000000000",
            "4999.5",
            "5000",
            "5000.1",
            "0500",
            "00",
            "0.0",
            "05",
            "1999",
            "9999",
            "10000",
            "10001",
            "-1",
            "-0",
            "1e3",
            " 1",
            "1_0",
            ".5",
            "5.",
            "0.1234567890123",
            "12.000000000000",
            "abc",
            "",
        ];
        for (schema, max, dp) in [
            (price(), 1000, 6),
            (carbon(), 5000, 3),
            (watts(), 10_000, 3),
        ] {
            for text in candidates {
                let by_operation =
                    plain_decimal(text).is_some_and(|d| check_range("x", d, max, dp).is_ok());
                assert_eq!(
                    accepted_by_pattern(schema.clone(), text),
                    by_operation,
                    "{text:?} up to {max}"
                );
            }
        }
    }

    #[test]
    fn text_and_name_patterns_accept_exactly_what_the_checks_accept() {
        use crate::operations::catalog::check_name;
        for s in [
            "paris",
            "Île-de-France",
            "a b",
            " a",
            "a ",
            "\u{0}",
            "x\ny",
            "\u{1b}[31m",
            "\u{9f}",
            "ok\u{a0}",
        ] {
            assert_eq!(
                accepted_by_pattern(name(), s),
                check_name("n", s).is_ok(),
                "{s:?}"
            );
            assert_eq!(
                accepted_by_pattern(text(0, 100), s),
                greenops_protocol::check_text("t", s, 0, 100).is_ok(),
                "{s:?}"
            );
        }
    }
}
