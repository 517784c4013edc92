//! Validation: the limits and checks a request item is held to. A `Checker` collects the
//! violations of one item under its path (`samples[3].total_steps`); `api::items` maps
//! each request message through one.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::dates::{check_day, earliest_day, local_day, max_clock_skew, parse_day, parse_time_zone};
use super::{quoted, reason, Violation};

pub const MAX_STEPS: u32 = 200_000;
pub const MAX_KEY_LEN: usize = 200;
pub const MAX_DEVICES: usize = 20;
pub const MAX_NOTES_CHARS: usize = 2000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DEVICE_NAME_CHARS: usize = 100;
/// How far ahead of the server's clock a manual entry's `recorded_at` may be.
pub const MAX_RECORDED_AHEAD: Duration = Duration::minutes(5);

/// What every item of one request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub zone: Option<Tz>,
}

/// Checks the number of items in a batch.
pub fn batch_size(field: &str, len: usize, min: usize, max: usize) -> Result<(), Violation> {
    if len < min {
        return Err(Violation::new(field, reason::REQUIRED, format!("send at least {min} item(s)")));
    }
    if len > max {
        return Err(Violation::new(field, reason::TOO_MANY, format!("{len} items; at most {max} per request")));
    }
    Ok(())
}

/// Resolves the request's `time_zone`; `needed` says whether some item's day must be derived.
pub fn time_zone(name: &str, needed: bool) -> Result<Option<Tz>, Violation> {
    if name.is_empty() {
        return match needed {
            true => Err(Violation::new(
                "time_zone",
                reason::REQUIRED,
                "an IANA time zone (e.g. America/New_York) is required to find the local day",
            )),
            false => Ok(None),
        };
    }
    parse_time_zone(name).map(Some).ok_or_else(|| {
        Violation::new("time_zone", reason::UNKNOWN_TIME_ZONE, format!("{} is not an IANA time zone", quoted(name)))
    })
}

/// What a text field may hold. Never NUL: PostgreSQL's text cannot hold it, and one rule for
/// both backends keeps them storing the same things. Identifiers and names hold no control
/// characters at all; prose (a check-in's notes) may break lines and tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Identifier,
    Prose,
}

impl TextKind {
    fn allows(self, c: char) -> bool {
        !c.is_control() || (self == TextKind::Prose && matches!(c, '\n' | '\r' | '\t'))
    }
}

/// Checks a text field's length in characters and its characters.
pub fn check_text(
    field: &str,
    value: &str,
    kind: TextKind,
    min_chars: usize,
    max_chars: usize,
) -> Result<(), Violation> {
    let chars = value.chars().count();
    if chars < min_chars {
        return Err(Violation::new(field, reason::REQUIRED, "must not be empty"));
    }
    if chars > max_chars {
        return Err(Violation::new(field, reason::TOO_LONG, format!("{chars} characters; at most {max_chars}")));
    }
    match value.chars().position(|c| !kind.allows(c)) {
        Some(at) => Err(Violation::new(
            field,
            reason::INVALID_CHARACTER,
            format!("a control character at character {at}; {}", quoted(value)),
        )),
        None => Ok(()),
    }
}

/// An identifier a client names (a user id, a device id): 1–200 characters, no control
/// characters.
pub fn identifier(field: &str, value: &str) -> Result<(), Violation> {
    check_text(field, value, TextKind::Identifier, 1, MAX_KEY_LEN)
}

/// Collects the violations of one item under a path prefix.
pub struct Checker {
    prefix: String,
    now: DateTime<Utc>,
    violations: Vec<Violation>,
}

impl Checker {
    pub fn new(prefix: impl Into<String>, now: DateTime<Utc>) -> Self {
        Checker { prefix: prefix.into(), now, violations: Vec::new() }
    }

    pub fn path(&self, field: &str) -> String {
        match self.prefix.is_empty() {
            true => field.to_string(),
            false => format!("{}.{field}", self.prefix),
        }
    }

    pub fn fail(&mut self, field: &str, reason: &'static str, description: impl Into<String>) {
        self.violations.push(Violation::new(self.path(field), reason, description));
    }

    pub fn keep<T>(&mut self, result: Result<T, Violation>) -> Option<T> {
        result.map_err(|v| self.violations.push(v)).ok()
    }

    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Violation>> {
        match (self.violations.is_empty(), value) {
            (true, Some(value)) => Ok(value),
            _ => Err(self.violations),
        }
    }

    /// A required instant, not before 2000 and not ahead of the clock by more than the skew.
    /// `(seconds, nanos)` since 1970 as a client sent it; nanos must be in `[0, 1e9)`. The
    /// instant is kept to the microsecond, the precision the store has, so that what is
    /// folded at once and what is folded again from the store are the same.
    pub fn instant(&mut self, field: &str, ts: Option<(i64, i32)>) -> Option<DateTime<Utc>> {
        let Some(ts) = ts else {
            self.fail(field, reason::REQUIRED, "a timestamp is required");
            return None;
        };
        self.instant_ahead_at_most(field, ts, max_clock_skew())
    }

    /// When a person made an entry: the receipt time (`now`) when not sent; when sent, an
    /// `instant` at most `MAX_RECORDED_AHEAD` ahead of the clock (a person records what
    /// happened, so only clock drift can put it ahead).
    pub fn recorded_at(&mut self, field: &str, ts: Option<(i64, i32)>) -> Option<DateTime<Utc>> {
        match ts {
            None => Some(self.now),
            Some(ts) => self.instant_ahead_at_most(field, ts, MAX_RECORDED_AHEAD),
        }
    }

    fn instant_ahead_at_most(
        &mut self,
        field: &str,
        (seconds, nanos): (i64, i32),
        ahead: Duration,
    ) -> Option<DateTime<Utc>> {
        let valid_nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
        let Some(at) = valid_nanos.and_then(|n| DateTime::from_timestamp(seconds, n - n % 1_000)) else {
            self.fail(field, reason::INVALID_FORMAT, "not a valid timestamp");
            return None;
        };
        if at.date_naive() < earliest_day() {
            self.fail(field, reason::OUT_OF_RANGE, "before 2000-01-01");
            return None;
        }
        if at > self.now + ahead {
            self.fail(field, reason::OUT_OF_RANGE, "in the future (check the device clock)");
            return None;
        }
        Some(at)
    }

    pub fn at_most_u32(&mut self, field: &str, value: u32, max: u32) -> u32 {
        if value > max {
            self.fail(field, reason::OUT_OF_RANGE, format!("{value} is above the maximum {max}"));
        }
        value
    }

    pub fn u32_between(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) -> Option<u32> {
        let v = value?;
        if !(min..=max).contains(&v) {
            self.fail(field, reason::OUT_OF_RANGE, format!("{v} is outside {min}–{max}"));
        }
        Some(v)
    }

    /// A finite number in `[min, max]`, or above `min` when `min_exclusive`.
    pub fn number(&mut self, field: &str, value: Option<f64>, min: f64, min_exclusive: bool, max: f64) -> Option<f64> {
        let v = value?;
        if !v.is_finite() {
            self.fail(field, reason::NOT_FINITE, "must be a finite number");
        } else if v < min || (min_exclusive && v == min) || v > max {
            let low = if min_exclusive { "above" } else { "at least" };
            self.fail(field, reason::OUT_OF_RANGE, format!("{v} must be {low} {min} and at most {max}"));
        }
        Some(v)
    }

    /// An identifier or a name: no control characters.
    pub fn text(&mut self, field: &str, value: &str, min_chars: usize, max_chars: usize) -> String {
        self.checked_text(field, value, TextKind::Identifier, min_chars, max_chars)
    }

    /// Free text: line breaks and tabs allowed.
    pub fn prose(&mut self, field: &str, value: &str, max_chars: usize) -> String {
        self.checked_text(field, value, TextKind::Prose, 0, max_chars)
    }

    fn checked_text(&mut self, field: &str, value: &str, kind: TextKind, min_chars: usize, max_chars: usize) -> String {
        let path = self.path(field);
        self.keep(check_text(&path, value, kind, min_chars, max_chars));
        value.to_string()
    }

    pub fn idempotency_key(&mut self, value: &str) -> Option<String> {
        let key = self.text("idempotency_key", value, 0, MAX_KEY_LEN);
        (!key.is_empty()).then_some(key)
    }

    pub fn devices(&mut self, devices: &[String]) -> Vec<String> {
        if devices.len() > MAX_DEVICES {
            self.fail("source_devices", reason::TOO_MANY, format!("at most {MAX_DEVICES} devices"));
        }
        for (i, d) in devices.iter().enumerate() {
            self.text(&format!("source_devices[{i}]"), d, 0, MAX_KEY_LEN);
        }
        devices.to_vec()
    }

    pub fn day(&mut self, field: &str, text: &str) -> Option<NaiveDate> {
        let path = self.path(field);
        let now = self.now;
        self.keep(parse_day(&path, text, now))
    }

    pub fn derived_day(&mut self, field: &str, instant: Option<DateTime<Utc>>, zone: Option<Tz>) -> Option<NaiveDate> {
        let day = local_day(instant?, zone.expect("time_zone is required when a day is derived"));
        let path = self.path(field);
        let now = self.now;
        self.keep(check_day(&path, day, now)).map(|_| day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_every_control_character_and_prose_only_keeps_line_breaks_and_tabs() {
        for bad in ["a\0b", "a\u{7}", "\u{1b}[31m", "tab\there", "line\n", "del\u{7f}", "c1\u{85}"] {
            let refused = check_text("f", bad, TextKind::Identifier, 0, 100).unwrap_err();
            assert_eq!(refused.reason, reason::INVALID_CHARACTER, "{bad:?}");
        }
        assert!(check_text("f", "Ana's iPhone – 🏃", TextKind::Identifier, 1, 100).is_ok());
        assert!(check_text("f", "sore legs\r\n\tand tired", TextKind::Prose, 0, 100).is_ok());
        for bad in ["a\0b", "a\u{7}", "\u{1b}[31m"] {
            assert_eq!(check_text("f", bad, TextKind::Prose, 0, 100).unwrap_err().reason, reason::INVALID_CHARACTER);
        }
        assert_eq!(check_text("f", "", TextKind::Identifier, 1, 100).unwrap_err().reason, reason::REQUIRED);
        assert_eq!(check_text("f", "ééé", TextKind::Identifier, 1, 2).unwrap_err().reason, reason::TOO_LONG);
    }
}
