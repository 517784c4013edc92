//! What a legacy import tells, as JSON lines while it goes (each coach added with their
//! token, everything left out, every difference, every day without its row: a client at a
//! time, so memory does not grow with the database) and at the end (the reconciliation's
//! counts).

use std::collections::BTreeMap;
use std::io::Write;

use chrono::NaiveDate;
use serde::Serialize;

use crate::domain::field::Scalar;

/// Why something of the legacy database did not come in, or shows differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A client with no cohort under a coach and no inviting coach.
    NoCoach,
    /// A user who is not a client (an admin, or a coach's own rows).
    NotAClient,
    /// A user id the service cannot take.
    InvalidId,
    /// A client erased from the service: they do not come back.
    Erased,
    /// The client exists in the service under another coach; they were not moved.
    OtherCoach,
    /// A value the service's checks refuse (out of range, say); `detail` says which check.
    Refused,
    /// A HealthKit sleep total written into `sleepQuality` (a known defect): minutes, not a
    /// 1–10 score; the night is in `SleepRecord`.
    SleepTotalInSleepQuality,
    /// `dataSources` that is not a list of "manual" and "healthkit": the row's fields are
    /// taken as typed.
    UnknownDataSources,
    /// `customResponses`: answers to the web app's own questions, which the service has no
    /// field for.
    CustomResponses,
    /// A sleep record without `sleepStart`/`sleepEnd`: the service's sleep is a session.
    SleepWithoutTimes,
    /// The same workout from two syncs (same type, overlapping times; a known defect).
    DuplicateWorkout,
    /// The day shows a value another author reported to the service, which outranks the
    /// imported one.
    Outranked,
    /// The legacy row no longer has a value an earlier import brought in from HealthKit,
    /// which a later report replaces but nothing withdraws.
    NotWithdrawn,
    /// A report whose key an earlier import used for other content (keys carry a digest
    /// of the report, so this is not expected).
    KeyReused,
}

impl Cause {
    /// Whether a difference (or something left out) with this cause is accounted for (a
    /// known legacy defect, or a documented choice), rather than something a person should
    /// look at.
    pub fn explains(self) -> bool {
        !matches!(self, Cause::NotWithdrawn | Cause::KeyReused)
    }
}

/// Something of the legacy database that did not come in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub table: &'static str,
    pub id: String,
    /// The column, when only that column was left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'static str>,
    pub cause: Cause,
    pub detail: String,
}

/// A field of a legacy Entry row that the service shows otherwise (beyond unit rounding).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub user_id: String,
    pub date: NaiveDate,
    /// The service's field (`weight_kg`) and the legacy column it came from (`weightLbs`).
    pub field: &'static str,
    pub column: &'static str,
    /// The legacy value in the service's unit.
    pub legacy: Option<Scalar>,
    pub imported: Option<Scalar>,
    /// What explains it; `None` when nothing known does.
    pub cause: Option<Cause>,
    pub detail: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Tally {
    pub added: u64,
    pub existing: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Events {
    pub written: u64,
    /// Already in the store (an earlier run wrote them).
    pub already_there: u64,
    pub refused: u64,
    /// Workouts an earlier run imported whose rows are gone (or now repeat another):
    /// deleted in the service too (their deletions are among `written`).
    pub workouts_withdrawn: u64,
}

/// A day an earlier run imported an Entry row for, whose row is gone (deleted, or moved to
/// another date): what it brought in stays, for a person to look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayWithoutRow {
    pub user_id: String,
    pub date: NaiveDate,
}

/// A coach the import added, with the coach's first token (shown only now).
#[derive(Debug, Clone, Serialize)]
pub struct NewCoach {
    pub coach_id: String,
    pub name: String,
    pub coach_token: String,
}

/// The counts at the end; what they count was told as it happened (`Listener`).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Reconciliation {
    pub rows_read: BTreeMap<&'static str, u64>,
    pub coaches: Tally,
    pub clients: Tally,
    pub events: Events,
    /// What was left out, by cause.
    pub skipped: BTreeMap<Cause, u64>,
    pub differences: u64,
    pub days_without_row: u64,
    /// Differences nothing known explains, and days without their row: each one is a
    /// question for a person.
    pub unexplained: u64,
}

/// Told what the import does as it does it. A coach's token is shown only here, so a
/// listener that cannot take something stops the import.
pub trait Listener {
    fn coach_added(&mut self, coach: &NewCoach) -> std::io::Result<()>;
    fn skipped(&mut self, skipped: &Skipped) -> std::io::Result<()>;
    fn difference(&mut self, difference: &Difference) -> std::io::Result<()>;
    fn day_without_row(&mut self, day: &DayWithoutRow) -> std::io::Result<()>;
}

impl Reconciliation {
    pub(super) fn skip(&mut self, skipped: Skipped, listener: &mut impl Listener) -> std::io::Result<()> {
        *self.skipped.entry(skipped.cause).or_default() += 1;
        if !skipped.cause.explains() {
            self.unexplained += 1;
        }
        listener.skipped(&skipped)
    }

    pub(super) fn differ(&mut self, difference: Difference, listener: &mut impl Listener) -> std::io::Result<()> {
        self.differences += 1;
        if !difference.cause.is_some_and(Cause::explains) {
            self.unexplained += 1;
        }
        listener.difference(&difference)
    }

    pub(super) fn lack_row(&mut self, day: DayWithoutRow, listener: &mut impl Listener) -> std::io::Result<()> {
        self.days_without_row += 1;
        self.unexplained += 1;
        listener.day_without_row(&day)
    }
}

/// Tells as JSON lines: a coach as `{"coach_id","name","coach_token"}`, then
/// `{"skipped": …}`, `{"difference": …}` and `{"day_without_row": …}`.
pub struct JsonLines<W: Write>(pub W);

impl<W: Write> JsonLines<W> {
    fn line(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, value)?;
        writeln!(self.0)?;
        // Flushed: a coach's token must be out before the next coach is added.
        self.0.flush()
    }
}

impl<W: Write> Listener for JsonLines<W> {
    fn coach_added(&mut self, coach: &NewCoach) -> std::io::Result<()> {
        self.line(coach)
    }

    fn skipped(&mut self, skipped: &Skipped) -> std::io::Result<()> {
        self.line(&serde_json::json!({ "skipped": skipped }))
    }

    fn difference(&mut self, difference: &Difference) -> std::io::Result<()> {
        self.line(&serde_json::json!({ "difference": difference }))
    }

    fn day_without_row(&mut self, day: &DayWithoutRow) -> std::io::Result<()> {
        self.line(&serde_json::json!({ "day_without_row": day }))
    }
}
