//! Local days in the person's time zone, DST included.

use chrono::{Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;

/// The local date of the instant `at` (Unix seconds).
pub fn local_day(zone: Tz, at: i64) -> NaiveDate {
    zone.timestamp_opt(at, 0).single().expect("every instant has one local time").date_naive()
}

/// `[start, end)` of a local day, in Unix seconds. A day whose midnight falls in a DST gap
/// starts at the first local time that exists.
pub fn day_bounds(zone: Tz, day: NaiveDate) -> (i64, i64) {
    (midnight(zone, day), midnight(zone, day + Duration::days(1)))
}

fn midnight(zone: Tz, day: NaiveDate) -> i64 {
    let mut local = day.and_hms_opt(0, 0, 0).expect("midnight");
    // A gap lasts at most a few hours; step through it.
    loop {
        if let Some(at) = zone.from_local_datetime(&local).earliest() {
            return at.timestamp();
        }
        local += Duration::minutes(15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_the_spring_change_is_23_hours_and_one_without_a_midnight_still_begins() {
        let new_york: Tz = "America/New_York".parse().unwrap();
        let (start, end) = day_bounds(new_york, NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        assert_eq!(end - start, 23 * 3600);
        // Santiago moved its clocks at midnight: 2022-09-11 began at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        let (start, _) = day_bounds(santiago, day);
        assert_eq!(local_day(santiago, start), day);
        assert_eq!(local_day(santiago, start - 1), day.pred_opt().unwrap());
    }
}
