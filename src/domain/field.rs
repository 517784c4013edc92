//! The fields of an Entry that the fold decides, and their values, typed per field.

use serde::{Deserialize, Serialize};

use super::fold::Day;

/// A field of an Entry with provenance. Its name (`as_str`) is the one the API, the
/// priority file and stored bodies use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Steps,
    WeightKg,
    HeightM,
    BodyFatPercent,
    LeanBodyMassKg,
    Calories,
    ProteinGrams,
    CarbsGrams,
    FatGrams,
    FiberGrams,
    SleepMinutes,
    SleepQuality,
    PerceivedStress,
    Notes,
    /// The SleepRecord.
    Sleep,
    /// The counted workouts.
    Workouts,
}

impl Field {
    pub const ALL: [Field; 16] = [
        Field::Steps,
        Field::WeightKg,
        Field::HeightM,
        Field::BodyFatPercent,
        Field::LeanBodyMassKg,
        Field::Calories,
        Field::ProteinGrams,
        Field::CarbsGrams,
        Field::FatGrams,
        Field::FiberGrams,
        Field::SleepMinutes,
        Field::SleepQuality,
        Field::PerceivedStress,
        Field::Notes,
        Field::Sleep,
        Field::Workouts,
    ];

    /// The fields a client or coach can set by hand.
    pub const MANUAL: [Field; 11] = [
        Field::Steps,
        Field::WeightKg,
        Field::Calories,
        Field::ProteinGrams,
        Field::CarbsGrams,
        Field::FatGrams,
        Field::FiberGrams,
        Field::SleepMinutes,
        Field::SleepQuality,
        Field::PerceivedStress,
        Field::Notes,
    ];

    /// The fields more than one source can offer: the ones a priority file may order.
    pub const PRIORITIZED: [Field; 8] = [
        Field::Steps,
        Field::WeightKg,
        Field::HeightM,
        Field::BodyFatPercent,
        Field::LeanBodyMassKg,
        Field::SleepMinutes,
        Field::Sleep,
        Field::Workouts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Steps => "steps",
            Field::WeightKg => "weight_kg",
            Field::HeightM => "height_m",
            Field::BodyFatPercent => "body_fat_percent",
            Field::LeanBodyMassKg => "lean_body_mass_kg",
            Field::Calories => "calories",
            Field::ProteinGrams => "protein_grams",
            Field::CarbsGrams => "carbs_grams",
            Field::FatGrams => "fat_grams",
            Field::FiberGrams => "fiber_grams",
            Field::SleepMinutes => "sleep_minutes",
            Field::SleepQuality => "sleep_quality",
            Field::PerceivedStress => "perceived_stress",
            Field::Notes => "notes",
            Field::Sleep => "sleep",
            Field::Workouts => "workouts",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// A manual field by name.
    pub fn parse_manual(name: &str) -> Option<Field> {
        Field::MANUAL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A value of one field, in that field's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "(Field, Scalar)", try_from = "(Field, Scalar)")]
pub enum FieldValue {
    Steps(u32),
    WeightKg(f64),
    HeightM(f64),
    BodyFatPercent(f64),
    LeanBodyMassKg(f64),
    Calories(u32),
    ProteinGrams(f64),
    CarbsGrams(f64),
    FatGrams(f64),
    FiberGrams(f64),
    SleepMinutes(u32),
    SleepQuality(u32),
    PerceivedStress(u32),
    Notes(String),
}

/// A value as stored inside a manual report: `["steps", 8432]`, `["notes", "…"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Count(u32),
    Amount(f64),
    Text(String),
}

impl FieldValue {
    pub fn field(&self) -> Field {
        match self {
            FieldValue::Steps(_) => Field::Steps,
            FieldValue::WeightKg(_) => Field::WeightKg,
            FieldValue::HeightM(_) => Field::HeightM,
            FieldValue::BodyFatPercent(_) => Field::BodyFatPercent,
            FieldValue::LeanBodyMassKg(_) => Field::LeanBodyMassKg,
            FieldValue::Calories(_) => Field::Calories,
            FieldValue::ProteinGrams(_) => Field::ProteinGrams,
            FieldValue::CarbsGrams(_) => Field::CarbsGrams,
            FieldValue::FatGrams(_) => Field::FatGrams,
            FieldValue::FiberGrams(_) => Field::FiberGrams,
            FieldValue::SleepMinutes(_) => Field::SleepMinutes,
            FieldValue::SleepQuality(_) => Field::SleepQuality,
            FieldValue::PerceivedStress(_) => Field::PerceivedStress,
            FieldValue::Notes(_) => Field::Notes,
        }
    }

    /// The value without its field.
    pub fn scalar(&self) -> Scalar {
        match self {
            FieldValue::Steps(n)
            | FieldValue::Calories(n)
            | FieldValue::SleepMinutes(n)
            | FieldValue::SleepQuality(n)
            | FieldValue::PerceivedStress(n) => Scalar::Count(*n),
            FieldValue::WeightKg(x)
            | FieldValue::HeightM(x)
            | FieldValue::BodyFatPercent(x)
            | FieldValue::LeanBodyMassKg(x)
            | FieldValue::ProteinGrams(x)
            | FieldValue::CarbsGrams(x)
            | FieldValue::FatGrams(x)
            | FieldValue::FiberGrams(x) => Scalar::Amount(*x),
            FieldValue::Notes(text) => Scalar::Text(text.clone()),
        }
    }

    /// Shows this value in its field of `day`.
    pub fn apply(&self, day: &mut Day) {
        match self {
            FieldValue::Steps(n) => day.steps = Some(*n),
            FieldValue::WeightKg(x) => day.weight_kg = Some(*x),
            FieldValue::HeightM(x) => day.height_m = Some(*x),
            FieldValue::BodyFatPercent(x) => day.body_fat_percent = Some(*x),
            FieldValue::LeanBodyMassKg(x) => day.lean_body_mass_kg = Some(*x),
            FieldValue::Calories(n) => day.calories = Some(*n),
            FieldValue::ProteinGrams(x) => day.protein_grams = Some(*x),
            FieldValue::CarbsGrams(x) => day.carbs_grams = Some(*x),
            FieldValue::FatGrams(x) => day.fat_grams = Some(*x),
            FieldValue::FiberGrams(x) => day.fiber_grams = Some(*x),
            FieldValue::SleepMinutes(n) => day.sleep_minutes = Some(*n),
            FieldValue::SleepQuality(n) => day.sleep_quality = Some(*n),
            FieldValue::PerceivedStress(n) => day.perceived_stress = Some(*n),
            FieldValue::Notes(text) => day.notes = Some(text.clone()),
        }
    }
}

impl From<FieldValue> for (Field, Scalar) {
    fn from(value: FieldValue) -> Self {
        (value.field(), value.scalar())
    }
}

impl TryFrom<(Field, Scalar)> for FieldValue {
    type Error = String;

    /// Counts are whole numbers and stay so; an amount may be written as a whole number.
    fn try_from((field, scalar): (Field, Scalar)) -> Result<Self, String> {
        match (field, scalar) {
            (Field::Steps, Scalar::Count(n)) => Ok(FieldValue::Steps(n)),
            (Field::Calories, Scalar::Count(n)) => Ok(FieldValue::Calories(n)),
            (Field::SleepMinutes, Scalar::Count(n)) => Ok(FieldValue::SleepMinutes(n)),
            (Field::SleepQuality, Scalar::Count(n)) => Ok(FieldValue::SleepQuality(n)),
            (Field::PerceivedStress, Scalar::Count(n)) => Ok(FieldValue::PerceivedStress(n)),
            (Field::Notes, Scalar::Text(text)) => Ok(FieldValue::Notes(text)),
            (field, Scalar::Count(n)) => FieldValue::amount(field, f64::from(n)),
            (field, Scalar::Amount(x)) => FieldValue::amount(field, x),
            (field, Scalar::Text(_)) => Err(format!("text is not a value of {}", field.as_str())),
        }
    }
}

impl FieldValue {
    /// A number of a field that holds amounts.
    fn amount(field: Field, x: f64) -> Result<FieldValue, String> {
        Ok(match field {
            Field::WeightKg => FieldValue::WeightKg(x),
            Field::HeightM => FieldValue::HeightM(x),
            Field::BodyFatPercent => FieldValue::BodyFatPercent(x),
            Field::LeanBodyMassKg => FieldValue::LeanBodyMassKg(x),
            Field::ProteinGrams => FieldValue::ProteinGrams(x),
            Field::CarbsGrams => FieldValue::CarbsGrams(x),
            Field::FatGrams => FieldValue::FatGrams(x),
            Field::FiberGrams => FieldValue::FiberGrams(x),
            other => return Err(format!("{x} is not a value of {}", other.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_manual_fields_parse_as_manual() {
        for field in Field::ALL {
            assert_eq!(Field::parse(field.as_str()), Some(field));
            let json = serde_json::to_string(&field).unwrap();
            assert_eq!(json, format!("\"{}\"", field.as_str()));
        }
        assert_eq!(Field::parse_manual("weight_kg"), Some(Field::WeightKg));
        assert_eq!(Field::parse_manual("height_m"), None);
        assert_eq!(Field::parse_manual("sleep"), None);
        assert_eq!(Field::parse("mood"), None);
    }

    /// Values are stored as `[field, value]`, the form manual reports have always had.
    #[test]
    fn a_value_is_stored_as_its_field_and_scalar() {
        let cases = [
            (FieldValue::Steps(12_000), r#"["steps",12000]"#),
            (FieldValue::WeightKg(81.5), r#"["weight_kg",81.5]"#),
            (FieldValue::Notes("slept badly".into()), r#"["notes","slept badly"]"#),
        ];
        for (value, stored) in cases {
            assert_eq!(serde_json::to_string(&value).unwrap(), stored);
            assert_eq!(serde_json::from_str::<FieldValue>(stored).unwrap(), value);
        }
        // A whole number is a valid amount; a fraction is not a count, nor text a number.
        assert_eq!(serde_json::from_str::<FieldValue>(r#"["weight_kg",80]"#).unwrap(), FieldValue::WeightKg(80.0));
        assert!(serde_json::from_str::<FieldValue>(r#"["steps",1.5]"#).is_err());
        assert!(serde_json::from_str::<FieldValue>(r#"["calories","lots"]"#).is_err());
        assert!(serde_json::from_str::<FieldValue>(r#"["sleep",1]"#).is_err());
    }
}
