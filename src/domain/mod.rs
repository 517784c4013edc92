//! The rules of CoachFit, free of I/O: what an event is, how a request item becomes one,
//! which local day it belongs to, and how a day's events fold into an Entry.

pub mod canonical;
pub mod dates;
pub mod event;
pub mod field;
pub mod fold;
pub mod priority;
pub mod validate;

use serde::{Deserialize, Serialize};

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A coach's (or an admin's) correction of a client's manual values.
    Coach,
    /// The client's own manual entry.
    Manual,
    Healthkit,
    Strava,
}

impl Source {
    /// Every source, in the default priority order.
    pub const ALL: [Source; 4] = [Source::Coach, Source::Manual, Source::Healthkit, Source::Strava];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Coach => "coach",
            Source::Manual => "manual",
            Source::Healthkit => "healthkit",
            Source::Strava => "strava",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|src| src.as_str() == s)
    }
}

/// Client text as an error message may show it: at most 32 characters, escaped. Input is
/// never echoed whole (a 20 KB date would not fit in a response's trailers).
pub fn quoted(text: &str) -> String {
    const SHOWN: usize = 32;
    let mut shown: String = text.chars().take(SHOWN).collect();
    if text.chars().nth(SHOWN).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// One problem with one field of a request, addressed by its path (`samples[3].total_steps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
    pub reason: &'static str,
}

impl Violation {
    pub fn new(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Self {
        Violation { field: field.into(), description: description.into(), reason }
    }
}

/// Machine-readable violation reasons.
pub mod reason {
    pub const REQUIRED: &str = "REQUIRED";
    pub const OUT_OF_RANGE: &str = "OUT_OF_RANGE";
    pub const INVALID_FORMAT: &str = "INVALID_FORMAT";
    pub const INVALID_CHARACTER: &str = "INVALID_CHARACTER";
    pub const NOT_FINITE: &str = "NOT_FINITE";
    pub const TOO_LONG: &str = "TOO_LONG";
    pub const TOO_MANY: &str = "TOO_MANY";
    pub const INCONSISTENT: &str = "INCONSISTENT";
    pub const UNKNOWN_TIME_ZONE: &str = "UNKNOWN_TIME_ZONE";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    pub const UNKNOWN_FIELD: &str = "UNKNOWN_FIELD";
    pub const DAY_FULL: &str = "DAY_FULL";
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_text_is_short_and_escaped() {
        assert_eq!(super::quoted("Europe/Nowhere"), r#""Europe/Nowhere""#);
        assert_eq!(super::quoted("a\u{0}b\n"), r#""a\0b\n""#);
        let long = super::quoted(&"x".repeat(20_000));
        assert_eq!(long, format!("\"{}…\"", "x".repeat(32)));
    }
}
