//! A legacy Entry row against the day the service folded from what came in: the fields
//! that differ beyond unit rounding, each with what explains it, if anything does.

use std::collections::HashMap;

use uuid::Uuid;

use super::mapping::{column, ACTOR, ENTRY_COLUMNS};
use super::report::{Cause, Difference, Skipped};
use super::rows::EntryRow;
use crate::domain::event::{KG_PER_LB, M_PER_INCH};
use crate::domain::field::{Field, Scalar};
use crate::domain::fold::Day;
use crate::domain::Source;

/// The row's value of `field`, in the service's unit.
fn legacy_value(row: &EntryRow, field: Field) -> Option<Scalar> {
    let count = |n: Option<i32>| n.map(|n| u32::try_from(n).map_or(Scalar::Amount(f64::from(n)), Scalar::Count));
    match field {
        Field::Steps => count(row.steps),
        Field::WeightKg => row.weight_lbs.map(|lbs| Scalar::Amount(lbs * KG_PER_LB)),
        Field::HeightM => row.height_inches.map(|inches| Scalar::Amount(inches * M_PER_INCH)),
        Field::BodyFatPercent => row.body_fat_percentage.map(Scalar::Amount),
        Field::Calories => count(row.calories),
        Field::SleepQuality => count(row.sleep_quality),
        Field::PerceivedStress => count(row.perceived_stress),
        Field::Notes => row.notes.clone().map(Scalar::Text),
        other => unreachable!("{} is not a legacy Entry field", other.as_str()),
    }
}

/// The day's value of `field`.
fn shown(day: &Day, field: Field) -> Option<Scalar> {
    match field {
        Field::Steps => day.steps.map(Scalar::Count),
        Field::WeightKg => day.weight_kg.map(Scalar::Amount),
        Field::HeightM => day.height_m.map(Scalar::Amount),
        Field::BodyFatPercent => day.body_fat_percent.map(Scalar::Amount),
        Field::Calories => day.calories.map(Scalar::Count),
        Field::SleepQuality => day.sleep_quality.map(Scalar::Count),
        Field::PerceivedStress => day.perceived_stress.map(Scalar::Count),
        Field::Notes => day.notes.clone().map(Scalar::Text),
        other => unreachable!("{} is not a legacy Entry field", other.as_str()),
    }
}

/// Equal up to the rounding of a unit conversion.
fn same(a: &Option<Scalar>, b: &Option<Scalar>) -> bool {
    let number = |s: &Scalar| match s {
        Scalar::Count(n) => Some(f64::from(*n)),
        Scalar::Amount(x) => Some(*x),
        Scalar::Text(_) => None,
    };
    match (a, b) {
        (Some(Scalar::Text(a)), Some(Scalar::Text(b))) => a == b,
        (Some(a), Some(b)) => match (number(a), number(b)) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            _ => false,
        },
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// A field the service shows otherwise than the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Differs {
    pub field: Field,
    pub legacy: Option<Scalar>,
    pub imported: Option<Scalar>,
}

/// The row's fields the day (`None`: the service has no entry for it) shows otherwise.
pub fn compare(row: &EntryRow, day: Option<&Day>) -> Vec<Differs> {
    ENTRY_COLUMNS
        .iter()
        .map(|(field, _)| Differs {
            field: *field,
            legacy: legacy_value(row, *field),
            imported: day.and_then(|day| shown(day, *field)),
        })
        .filter(|d| !same(&d.legacy, &d.imported))
        .collect()
}

/// What of the row's `field` was left out, if anything.
fn left_out<'a>(row: &EntryRow, field: Field, skipped: &'a [Skipped]) -> Option<&'a Skipped> {
    let column = column(field);
    skipped.iter().find(|s| s.table == "Entry" && s.id == row.id && s.column == Some(column))
}

/// Whether `explain` needs the authors of the day's events for this difference: unless
/// what was left out of the row explains it (a value left out for another author's sake
/// needs checking that theirs is what shows).
pub fn needs_authors(row: &EntryRow, differs: &Differs, skipped: &[Skipped]) -> bool {
    left_out(row, differs.field, skipped).is_none_or(|skip| skip.cause == Cause::Outranked)
}

/// A difference with what explains it: a value of the row that did not come in (and why),
/// else who reported the value shown (`actors`: the authors of the day's events).
pub fn explain(
    user_id: &str,
    row: &EntryRow,
    differs: Differs,
    day: Option<&Day>,
    skipped: &[Skipped],
    actors: &HashMap<Uuid, String>,
) -> Difference {
    let column = column(differs.field);
    let left_out = left_out(row, differs.field, skipped);
    let shown_by = day
        .and_then(|day| day.provenance.iter().find(|p| p.field == differs.field))
        .and_then(|p| Some((p.source, actors.get(p.event_ids.first()?)?)));
    let (cause, detail) = match (left_out, shown_by) {
        // Left out for another author, yet the import's earlier value is what shows.
        (Some(skip), Some((_, actor))) if skip.cause == Cause::Outranked && actor == ACTOR => {
            (None, "left out for another author, yet an earlier import's value shows".to_string())
        }
        (Some(skip), _) => (Some(skip.cause), skip.detail.clone()),
        (None, Some((source, actor))) if actor != ACTOR => {
            (Some(Cause::Outranked), format!("shown from {} reported by {actor}", source.as_str()))
        }
        (None, Some((Source::Healthkit, _))) if differs.legacy.is_none() => {
            (Some(Cause::NotWithdrawn), "imported from an earlier version of the row".to_string())
        }
        _ => (None, String::new()),
    };
    Difference {
        user_id: user_id.to_string(),
        date: row.date,
        field: differs.field.as_str(),
        column,
        legacy: differs.legacy,
        imported: differs.imported,
        cause,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::fold::{Provenance, Reason};

    fn row() -> EntryRow {
        let at = NaiveDate::from_ymd_opt(2024, 5, 2).unwrap().and_hms_opt(8, 0, 0).unwrap();
        EntryRow {
            id: "e1".into(),
            date: NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
            weight_lbs: Some(180.0),
            steps: Some(9_000),
            calories: None,
            height_inches: Some(70.0),
            sleep_quality: Some(7),
            perceived_stress: None,
            notes: Some("ok".into()),
            has_custom_responses: false,
            data_sources: None,
            body_fat_percentage: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn converted_units_match_and_every_other_gap_is_a_difference() {
        let day = Day {
            // 180 lb and 70 in, converted by hand.
            weight_kg: Some(81.6466266),
            height_m: Some(1.778),
            steps: Some(9_000),
            sleep_quality: Some(7),
            notes: Some("ok".into()),
            ..Day::default()
        };
        assert_eq!(compare(&row(), Some(&day)), []);
        let rounded = Day { weight_kg: Some(81.65), ..day };
        let differs: Vec<Field> = compare(&row(), Some(&rounded)).into_iter().map(|d| d.field).collect();
        assert_eq!(differs, [Field::WeightKg]);
        let missing: Vec<Field> = compare(&row(), None).into_iter().map(|d| d.field).collect();
        assert_eq!(missing, [Field::Steps, Field::WeightKg, Field::HeightM, Field::SleepQuality, Field::Notes]);
    }

    #[test]
    fn a_difference_is_explained_by_what_was_left_out_else_by_who_reported_the_value_shown() {
        let (other, imported) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let provenance = |field, source, event_id| Provenance {
            field,
            source,
            overridden: false,
            event_ids: vec![event_id],
            reason: Reason::LatestStepTotal { source, observed_at: chrono::DateTime::UNIX_EPOCH },
        };
        let day = Day {
            steps: Some(12_000),
            notes: Some("from the phone".into()),
            // An earlier version of the row had a body fat; this one has none.
            body_fat_percent: Some(20.0),
            provenance: vec![
                provenance(Field::Steps, Source::Healthkit, other),
                provenance(Field::Notes, Source::Manual, imported),
                provenance(Field::BodyFatPercent, Source::Healthkit, imported),
            ],
            ..Day::default()
        };
        let actors = HashMap::from([(other, "device:d1".to_string()), (imported, ACTOR.to_string())]);
        let skipped = [Skipped {
            table: "Entry",
            id: "e1".into(),
            column: Some("weightLbs"),
            cause: Cause::Refused,
            detail: "out of range".into(),
        }];
        let explained: Vec<(Field, Option<Cause>)> = compare(&row(), Some(&day))
            .into_iter()
            .map(|d| (d.field, explain("u1", &row(), d, Some(&day), &skipped, &actors).cause))
            .collect();
        assert_eq!(
            explained,
            [
                (Field::Steps, Some(Cause::Outranked)),
                (Field::WeightKg, Some(Cause::Refused)),
                (Field::HeightM, None),
                (Field::BodyFatPercent, Some(Cause::NotWithdrawn)),
                (Field::SleepQuality, None),
                // Imported, yet shown otherwise: nothing known explains it.
                (Field::Notes, None),
            ]
        );
    }

    #[test]
    fn a_value_left_out_for_another_author_is_explained_only_if_theirs_shows() {
        let (phone, imported) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let skipped = [Skipped {
            table: "Entry",
            id: "e1".into(),
            column: Some("weightLbs"),
            cause: Cause::Outranked,
            detail: "the service has it from device:d1".into(),
        }];
        let actors = HashMap::from([(phone, "device:d1".to_string()), (imported, ACTOR.to_string())]);
        let cause_when_shown_from = |event_id| {
            let day = Day {
                weight_kg: Some(80.0),
                provenance: vec![Provenance {
                    field: Field::WeightKg,
                    source: Source::Manual,
                    overridden: true,
                    event_ids: vec![event_id],
                    reason: Reason::LatestManualEntry { actor: String::new(), seq: 1 },
                }],
                ..Day::default()
            };
            let differs = compare(&row(), Some(&day)).into_iter().find(|d| d.field == Field::WeightKg).unwrap();
            explain("u1", &row(), differs, Some(&day), &skipped, &actors).cause
        };
        assert_eq!(cause_when_shown_from(phone), Some(Cause::Outranked));
        // The import's own earlier value still shows: a person should look.
        assert_eq!(cause_when_shown_from(imported), None);
    }
}
