//! A user's data as they can take it with them (GDPR art. 20): every event as stored, then
//! every entry, read page by page so that years of data stream in bounded memory. The API
//! (`ExportUserData`) sends the records as messages; `coachfit export` writes them as JSON
//! Lines (a header naming the format and its version first) or as CSV (one row per day, the
//! coach's spreadsheet).

use chrono::{DateTime, NaiveDate, Utc};
use futures::{stream, Stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::api::convert::{hundredths, thousandths};
use crate::domain::event::StoredEvent;
use crate::store::{Store, StoreResult, StoredEntry};

/// Named in the header of every export.
pub const FORMAT: &str = "coachfit-export";
/// The version of the records' shape; a change to it takes a new version.
pub const VERSION: u32 = 1;
/// Records read per query.
const PAGE: u32 = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum ExportRecord {
    Event(Box<StoredEvent>),
    Entry(Box<StoredEntry>),
}

/// Where the export has got to.
enum Cursor {
    Events { after_seq: i64 },
    Entries { after: Option<NaiveDate> },
    Done,
}

/// Every event of the user by `seq`, then every entry by day. Writes made while it runs
/// may or may not be included.
pub fn records<S: Store>(store: S, user_id: String) -> impl Stream<Item = StoreResult<ExportRecord>> + Send {
    let (first, last) = (NaiveDate::from_ymd_opt(1, 1, 1), NaiveDate::from_ymd_opt(9999, 12, 31));
    let (first, last) = (first.expect("a valid date"), last.expect("a valid date"));
    let pages = stream::try_unfold(Cursor::Events { after_seq: 0 }, move |cursor| {
        let (store, user_id) = (store.clone(), user_id.clone());
        async move {
            StoreResult::Ok(match cursor {
                Cursor::Events { after_seq } => {
                    let events = store.user_events(&user_id, after_seq, PAGE).await?;
                    let next = match events.last() {
                        Some(last) if events.len() == PAGE as usize => Cursor::Events { after_seq: last.seq },
                        _ => Cursor::Entries { after: None },
                    };
                    Some((
                        events.into_iter().map(|event| ExportRecord::Event(Box::new(event))).collect::<Vec<_>>(),
                        next,
                    ))
                }
                Cursor::Entries { after } => {
                    let entries = store.list_entries(&user_id, first, last, after, PAGE).await?;
                    let next = match entries.last() {
                        Some(last) if entries.len() == PAGE as usize => Cursor::Entries { after: Some(last.day) },
                        _ => Cursor::Done,
                    };
                    Some((entries.into_iter().map(|entry| ExportRecord::Entry(Box::new(entry))).collect(), next))
                }
                Cursor::Done => None,
            })
        }
    });
    pages.map_ok(|page| stream::iter(page.into_iter().map(Ok))).try_flatten().boxed()
}

/// The first line of a JSON Lines export.
pub fn header_json(user_id: &str, exported_at: DateTime<Utc>) -> Value {
    json!({"format": FORMAT, "version": VERSION, "user_id": user_id, "exported_at": exported_at.to_rfc3339()})
}

/// One record as a line of a JSON Lines export.
pub fn record_json(record: &ExportRecord) -> Value {
    match record {
        ExportRecord::Event(event) => json!({
            "type": "event",
            "event_id": event.event_id,
            "seq": event.seq,
            "kind": event.payload.kind().as_str(),
            "source": event.source.as_str(),
            "day": event.day,
            "observed_at": event.observed_at.to_rfc3339(),
            "recorded_at": event.recorded_at.to_rfc3339(),
            "actor": event.actor,
            "payload": event.payload,
        }),
        ExportRecord::Entry(entry) => json!({
            "type": "entry",
            "date": entry.day,
            "position": entry.position,
            "updated_at": entry.updated_at.to_rfc3339(),
            "values": entry.body,
        }),
    }
}

/// The columns of a CSV export, one row per day.
pub const CSV_COLUMNS: [&str; 19] = [
    "date",
    "steps",
    "sleep_minutes",
    "weight_kg",
    "height_m",
    "body_fat_percent",
    "lean_body_mass_kg",
    "calories",
    "protein_grams",
    "carbs_grams",
    "fat_grams",
    "fiber_grams",
    "sleep_quality",
    "perceived_stress",
    "workouts",
    "workout_minutes",
    "active_kcal",
    "notes",
    "sources",
];

/// A day as a CSV row (empty cells for values the day has none of).
pub fn csv_row(entry: &StoredEntry) -> [String; 19] {
    let day = &entry.body;
    let cell = |value: Option<String>| value.unwrap_or_default();
    let number = |value: Option<f64>| cell(value.map(|v| v.to_string()));
    let count = |value: Option<u32>| cell(value.map(|v| v.to_string()));
    let workouts = (day.workouts.count > 0).then_some(&day.workouts);
    let sources: Vec<&str> = day.data_sources.iter().map(|source| source.as_str()).collect();
    [
        entry.day.to_string(),
        count(day.steps),
        count(day.sleep_minutes),
        // Rounded as the API shows them (a pound converted is not 78.19932458800001 kg).
        number(day.weight_kg.map(thousandths)),
        number(day.height_m.map(thousandths)),
        number(day.body_fat_percent.map(hundredths)),
        number(day.lean_body_mass_kg.map(thousandths)),
        count(day.calories),
        number(day.protein_grams),
        number(day.carbs_grams),
        number(day.fat_grams),
        number(day.fiber_grams),
        count(day.sleep_quality),
        count(day.perceived_stress),
        count(workouts.map(|w| w.count)),
        number(workouts.map(|w| w.total_minutes)),
        number(workouts.map(|w| w.active_kcal)),
        cell(day.notes.as_deref().map(inert)),
        sources.join(" "),
    ]
}

/// Text a spreadsheet will not run as a formula: a cell starting with `=`, `+`, `-`, `@`
/// or a tab or carriage return gets a leading `'` (the client writes the notes).
fn inert(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::inert;

    #[test]
    fn a_note_that_looks_like_a_formula_stays_text() {
        assert_eq!(inert("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(inert("-5 kg, great week"), "'-5 kg, great week");
        assert_eq!(inert("slept badly"), "slept badly");
    }
}
