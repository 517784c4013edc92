//! The per-field source-priority rule: which source's value an Entry field shows.

use std::collections::BTreeMap;

use serde::Deserialize;

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
}

impl Default for PriorityRule {
    /// coach > manual > healthkit > strava for every field.
    fn default() -> Self {
        PriorityRule { default: Source::ALL.to_vec(), per_field: BTreeMap::new(), names_coach: true }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityFile {
    #[serde(default)]
    default: Option<Vec<String>>,
    #[serde(default)]
    fields: BTreeMap<String, Vec<String>>,
}

impl PriorityRule {
    /// Reads a priority file: `{"default": ["manual", ...], "fields": {"steps": ["healthkit", "manual"]}}`.
    pub fn from_json(text: &str) -> Result<PriorityRule, String> {
        let file: PriorityFile = serde_json::from_str(text).map_err(|e| format!("priority file: {e}"))?;
        let mut rule = PriorityRule::default();
        let coach = Source::Coach.as_str();
        rule.names_coach = file.default.iter().chain(file.fields.values()).flatten().any(|name| name == coach);
        if let Some(order) = file.default {
            rule.default = parse_order("default", &order)?;
        }
        for (name, order) in file.fields {
            let Some(field) = Field::parse(&name).filter(|f| Field::PRIORITIZED.contains(f)) else {
                let known: Vec<&str> = Field::PRIORITIZED.iter().map(|f| f.as_str()).collect();
                return Err(format!("priority file: unknown field '{name}' (known: {})", known.join(", ")));
            };
            let order = parse_order(&name, &order)?;
            rule.per_field.insert(field, order);
        }
        Ok(rule)
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

fn parse_order(field: &str, names: &[String]) -> Result<Vec<Source>, String> {
    let mut order = Vec::new();
    for name in names {
        let source = Source::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
            format!("priority file: '{field}' names unknown source '{name}' ({})", known.join(", "))
        })?;
        if order.contains(&source) {
            return Err(format!("priority file: '{field}' lists '{name}' twice"));
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
    fn rejects_unknown_names() {
        assert!(PriorityRule::from_json(r#"{"fields": {"mood": ["manual"]}}"#).is_err());
        assert!(PriorityRule::from_json(r#"{"default": ["fitbit"]}"#).is_err());
        assert!(PriorityRule::from_json(r#"{"default": ["manual", "manual"]}"#).is_err());
    }
}
