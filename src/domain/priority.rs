//! The per-field source-priority rule: which source's value an Entry field shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::field::Field;
use super::Source;

/// Source order per field; the first source listed wins. Sources a list leaves out rank
/// after the listed ones, in the default order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityRule {
    default: Vec<Source>,
    per_field: BTreeMap<Field, Vec<Source>>,
    /// Whether the rule names `coach` anywhere (see `rank`).
    names_coach: bool,
    /// The rule as written, which is what the store keeps and `show` prints.
    file: PriorityFile,
}

impl Default for PriorityRule {
    /// coach > manual > healthkit > strava for every field.
    fn default() -> Self {
        PriorityRule {
            default: Source::ALL.to_vec(),
            per_field: BTreeMap::new(),
            names_coach: true,
            file: PriorityFile::default(),
        }
    }
}

/// A rule as written: source names per field, the default order if one is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Vec<String>>,
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
}

/// Why a rule was refused: the part of it at fault (`default`, `fields.steps`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "priority rule: {}: {}", self.path, self.message)
    }
}

impl PriorityRule {
    /// Reads a priority file: `{"default": ["manual", ...], "fields": {"steps": ["healthkit", "manual"]}}`.
    pub fn from_json(text: &str) -> Result<PriorityRule, RuleError> {
        let file: PriorityFile =
            serde_json::from_str(text).map_err(|e| RuleError { path: "file".into(), message: e.to_string() })?;
        PriorityRule::from_file(file)
    }

    pub fn from_file(file: PriorityFile) -> Result<PriorityRule, RuleError> {
        let mut rule = PriorityRule::default();
        let coach = Source::Coach.as_str();
        rule.names_coach = file.default.iter().chain(file.fields.values()).flatten().any(|name| name == coach);
        if let Some(order) = &file.default {
            rule.default = parse_order("default", order)?;
        }
        for (name, order) in &file.fields {
            let path = format!("fields.{name}");
            let Some(field) = Field::parse(name).filter(|f| Field::PRIORITIZED.contains(f)) else {
                let known: Vec<&str> = Field::PRIORITIZED.iter().map(|f| f.as_str()).collect();
                return Err(RuleError { path, message: format!("unknown field (known: {})", known.join(", ")) });
            };
            let order = parse_order(&path, order)?;
            rule.per_field.insert(field, order);
        }
        rule.file = file;
        Ok(rule)
    }

    /// The rule as written.
    pub fn file(&self) -> &PriorityFile {
        &self.file
    }

    /// The rule as the store keeps it: the file, as compact JSON with sorted fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.file).expect("priority files serialize")
    }

    /// Lower is better. A source a list leaves out ranks after the listed ones, except the
    /// coach: a file that never names `coach` (every file written before coach corrections
    /// were a source of their own) ranks a coach's correction just above the client's own
    /// entries, where it stood when it was a manual entry.
    pub fn rank(&self, field: Field, source: Source) -> usize {
        let listed = self.per_field.get(&field).unwrap_or(&self.default);
        if source == Source::Coach && !self.names_coach {
            return self.rank(field, Source::Manual) - 1;
        }
        match listed.iter().position(|s| *s == source) {
            Some(i) => 2 * i + 1,
            None => {
                // Then in the file's default order, then the built-in one (a field's list
                // may leave out what the default names, and the default what is built in).
                let fallback = self.default.iter().position(|s| *s == source).unwrap_or(self.default.len());
                let builtin = Source::ALL.iter().position(|s| *s == source).unwrap_or(Source::ALL.len());
                2 * (listed.len() + fallback * (Source::ALL.len() + 1) + builtin) + 1
            }
        }
    }
}

fn parse_order(path: &str, names: &[String]) -> Result<Vec<Source>, RuleError> {
    let mut order = Vec::new();
    for name in names {
        let source = Source::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
            RuleError { path: path.into(), message: format!("unknown source '{name}' (known: {})", known.join(", ")) }
        })?;
        if order.contains(&source) {
            return Err(RuleError { path: path.into(), message: format!("lists '{name}' twice") });
        }
        order.push(source);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_coach_then_manual_then_healthkit_then_strava() {
        let rule = PriorityRule::default();
        assert!(rule.rank(Field::Steps, Source::Coach) < rule.rank(Field::Steps, Source::Manual));
        assert!(rule.rank(Field::Steps, Source::Manual) < rule.rank(Field::Steps, Source::Healthkit));
        assert!(rule.rank(Field::Workouts, Source::Healthkit) < rule.rank(Field::Workouts, Source::Strava));
    }

    #[test]
    fn a_field_can_prefer_healthkit() {
        let rule = PriorityRule::from_json(r#"{"fields": {"steps": ["healthkit"]}}"#).unwrap();
        assert!(rule.rank(Field::Steps, Source::Healthkit) < rule.rank(Field::Steps, Source::Manual));
        assert!(rule.rank(Field::Steps, Source::Manual) < rule.rank(Field::Steps, Source::Strava));
        assert!(rule.rank(Field::WeightKg, Source::Manual) < rule.rank(Field::WeightKg, Source::Healthkit));
    }

    #[test]
    fn a_file_that_names_manual_but_not_coach_ranks_corrections_just_above_manual() {
        let rule = PriorityRule::from_json(r#"{"default": ["manual", "healthkit", "strava"]}"#).unwrap();
        assert!(rule.rank(Field::Steps, Source::Coach) < rule.rank(Field::Steps, Source::Manual));
        let rule = PriorityRule::from_json(r#"{"fields": {"steps": ["healthkit", "manual"]}}"#).unwrap();
        let steps = |source| rule.rank(Field::Steps, source);
        assert!(steps(Source::Healthkit) < steps(Source::Coach) && steps(Source::Coach) < steps(Source::Manual));
        let rule = PriorityRule::from_json(r#"{"default": ["healthkit", "strava"]}"#).unwrap();
        let steps = |source| rule.rank(Field::Steps, source);
        assert!(steps(Source::Strava) < steps(Source::Coach) && steps(Source::Coach) < steps(Source::Manual));
        let rule =
            PriorityRule::from_json(r#"{"default": ["manual", "healthkit"], "fields": {"steps": ["healthkit"]}}"#)
                .unwrap();
        let steps = |source| rule.rank(Field::Steps, source);
        assert!(steps(Source::Healthkit) < steps(Source::Coach) && steps(Source::Coach) < steps(Source::Manual));
        assert!(steps(Source::Manual) < steps(Source::Strava));
        let named = PriorityRule::from_json(r#"{"default": ["healthkit", "coach", "manual"]}"#).unwrap();
        assert!(named.rank(Field::Steps, Source::Healthkit) < named.rank(Field::Steps, Source::Coach));
    }

    #[test]
    fn a_rule_read_back_from_its_json_ranks_every_source_alike() {
        for text in [
            r#"{"fields": {"steps": ["healthkit", "manual"]}}"#,
            r#"{"default": ["healthkit", "strava"]}"#,
            r#"{"default": ["strava", "coach"], "fields": {"sleep": ["manual"], "weight_kg": []}}"#,
            "{}",
        ] {
            let rule = PriorityRule::from_json(text).unwrap();
            let again = PriorityRule::from_json(&rule.to_json()).unwrap();
            for field in Field::PRIORITIZED {
                for source in Source::ALL {
                    assert_eq!(rule.rank(field, source), again.rank(field, source), "{text}: {field:?} {source:?}");
                }
            }
            assert_eq!(again.to_json(), rule.to_json());
        }
        assert_eq!(PriorityRule::default().to_json(), r#"{"fields":{}}"#);
    }

    #[test]
    fn rejects_unknown_names() {
        let unknown = PriorityRule::from_json(r#"{"fields": {"mood": ["manual"]}}"#).unwrap_err();
        assert_eq!(unknown.path, "fields.mood");
        assert!(PriorityRule::from_json(r#"{"default": ["fitbit"]}"#).is_err());
        assert!(PriorityRule::from_json(r#"{"default": ["manual", "manual"]}"#).is_err());
    }
}
