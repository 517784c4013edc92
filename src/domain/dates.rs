//! Day attribution: which local calendar day a report belongs to.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{quoted, reason, Violation};

/// The earliest day CoachFit accepts.
pub fn earliest_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid constant date")
}

/// The latest day that exists anywhere on Earth at `now`: today in UTC+14.
pub fn latest_day(now: DateTime<Utc>) -> NaiveDate {
    let kiribati = FixedOffset::east_opt(14 * 3600).expect("valid offset");
    now.with_timezone(&kiribati).date_naive()
}

/// Parses a `YYYY-MM-DD` local date and checks it lies in [2000-01-01, today in UTC+14].
pub fn parse_day(field: &str, text: &str, now: DateTime<Utc>) -> Result<NaiveDate, Violation> {
    if text.is_empty() {
        return Err(Violation::new(field, reason::REQUIRED, "a date YYYY-MM-DD is required"));
    }
    let day = parse_date(field, text)?;
    check_day(field, day, now)?;
    Ok(day)
}

/// Parses a date written exactly `YYYY-MM-DD` (no sign, no fifth year digit): dates are
/// stored and compared as such text, which then sorts as the dates do.
pub fn parse_date(field: &str, text: &str) -> Result<NaiveDate, Violation> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !shaped {
        return Err(Violation::new(
            field,
            reason::INVALID_FORMAT,
            format!("{} is not a date YYYY-MM-DD", quoted(text)),
        ));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Violation::new(field, reason::INVALID_FORMAT, format!("{text} is not a day of the calendar")))
}

/// Checks that a derived or parsed day lies in the accepted range.
pub fn check_day(field: &str, day: NaiveDate, now: DateTime<Utc>) -> Result<(), Violation> {
    if day < earliest_day() {
        return Err(Violation::new(field, reason::OUT_OF_RANGE, format!("{day} is before 2000-01-01")));
    }
    if day > latest_day(now) {
        return Err(Violation::new(field, reason::OUT_OF_RANGE, format!("{day} is in the future")));
    }
    Ok(())
}

/// Parses an IANA time zone name such as `America/New_York`.
pub fn parse_time_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// The local calendar date of an instant in a time zone (DST-aware through the tz database).
pub fn local_day(instant: DateTime<Utc>, zone: Tz) -> NaiveDate {
    instant.with_timezone(&zone).date_naive()
}

/// The instant of `day` at local `time` in a zone; in a gap (a clock moved forward over
/// it), an hour later.
pub fn local_instant(day: NaiveDate, time: chrono::NaiveTime, zone: Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let local = day.and_time(time);
    let at = zone.from_local_datetime(&local).earliest();
    let at = at.or_else(|| zone.from_local_datetime(&(local + Duration::hours(1))).earliest());
    at.map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc))
}

/// How far in the future a device clock may be before its timestamps are refused. A reading
/// from the future would otherwise beat every real later reading (stale never wins).
pub fn max_clock_skew() -> Duration {
    Duration::hours(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap()
    }

    #[test]
    fn accepts_a_plain_date() {
        assert_eq!(parse_day("date", "2026-03-01", now()).unwrap(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
    }

    #[test]
    fn rejects_malformed_early_and_future_dates() {
        assert_eq!(parse_day("d", "2026-3-1", now()).unwrap_err().reason, reason::INVALID_FORMAT);
        let no_such_day = parse_day("d", "2026-02-30", now()).unwrap_err();
        assert_eq!(no_such_day.reason, reason::INVALID_FORMAT);
        assert_eq!(no_such_day.description, "2026-02-30 is not a day of the calendar");
        assert_eq!(parse_day("d", "1999-12-31", now()).unwrap_err().reason, reason::OUT_OF_RANGE);
        assert_eq!(parse_day("d", "2026-03-10", now()).unwrap_err().reason, reason::OUT_OF_RANGE);
        assert_eq!(parse_day("d", "", now()).unwrap_err().reason, reason::REQUIRED);
        for odd in ["+10000-01-01", "+999-01-01", "2026-03-1 ", "２０２６-03-01"] {
            assert_eq!(parse_date("d", odd).unwrap_err().reason, reason::INVALID_FORMAT, "{odd}");
        }
        assert_eq!(parse_date("d", "9999-12-31").unwrap(), NaiveDate::from_ymd_opt(9999, 12, 31).unwrap());
    }

    #[test]
    fn tomorrow_is_fine_where_tomorrow_already_began() {
        // 12:00 UTC is already 02:00 the next day in UTC+14.
        assert!(parse_day("d", "2026-03-09", now()).is_ok());
    }

    #[test]
    fn local_day_follows_the_zone_across_dst() {
        let ny = parse_time_zone("America/New_York").unwrap();
        // 2026-03-08 is the spring-forward day in New York: 04:30 UTC is 23:30 on the 7th (EST).
        let before = Utc.with_ymd_and_hms(2026, 3, 8, 4, 30, 0).unwrap();
        assert_eq!(local_day(before, ny), NaiveDate::from_ymd_opt(2026, 3, 7).unwrap());
        // 2026-03-09 03:30 UTC is 23:30 on the 8th (EDT, UTC-4): a fixed UTC-5 would say the 8th too,
        // but 04:30 UTC is 00:30 on the 9th only with the real DST offset.
        let after = Utc.with_ymd_and_hms(2026, 3, 9, 4, 30, 0).unwrap();
        assert_eq!(local_day(after, ny), NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        assert!(parse_time_zone("Mars/Olympus").is_none());
    }
}
