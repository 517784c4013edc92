//! The per-field source-priority rule: which source's value an Entry field shows.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Source;

/// Entry fields whose value can come from more than one source.
pub const PRIORITIZED_FIELDS: [&str; 8] =
    ["steps", "weight_kg", "height_m", "body_fat_percent", "lean_body_mass_kg", "sleep_minutes", "sleep", "workouts"];

/// Source order per field; the first source listed wins. Sources a list leaves out rank
/// after the listed ones, in the default order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityRule {
    default: Vec<Source>,
    per_field: BTreeMap<String, Vec<Source>>,
}

impl Default for PriorityRule {
    /// manual > healthkit > strava for every field.
    fn default() -> Self {
        PriorityRule { default: Source::ALL.to_vec(), per_field: BTreeMap::new() }
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
        if let Some(order) = file.default {
            rule.default = parse_order("default", &order)?;
        }
        for (field, order) in file.fields {
            if !PRIORITIZED_FIELDS.contains(&field.as_str()) {
                return Err(format!(
                    "priority file: unknown field '{field}' (known: {})",
                    PRIORITIZED_FIELDS.join(", ")
                ));
            }
            let order = parse_order(&field, &order)?;
            rule.per_field.insert(field, order);
        }
        Ok(rule)
    }

    /// Lower is better.
    pub fn rank(&self, field: &str, source: Source) -> usize {
        let listed = self.per_field.get(field).unwrap_or(&self.default);
        match listed.iter().position(|s| *s == source) {
            Some(i) => i,
            None => listed.len() + self.default.iter().position(|s| *s == source).unwrap_or(Source::ALL.len()),
        }
    }
}

fn parse_order(field: &str, names: &[String]) -> Result<Vec<Source>, String> {
    let mut order = Vec::new();
    for name in names {
        let source = Source::parse(name).ok_or_else(|| {
            format!("priority file: '{field}' names unknown source '{name}' (manual, healthkit, strava)")
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
    fn default_is_manual_then_healthkit_then_strava() {
        let rule = PriorityRule::default();
        assert!(rule.rank("steps", Source::Manual) < rule.rank("steps", Source::Healthkit));
        assert!(rule.rank("workouts", Source::Healthkit) < rule.rank("workouts", Source::Strava));
    }

    #[test]
    fn a_field_can_prefer_healthkit() {
        let rule = PriorityRule::from_json(r#"{"fields": {"steps": ["healthkit"]}}"#).unwrap();
        assert!(rule.rank("steps", Source::Healthkit) < rule.rank("steps", Source::Manual));
        assert!(rule.rank("steps", Source::Manual) < rule.rank("steps", Source::Strava));
        assert!(rule.rank("weight_kg", Source::Manual) < rule.rank("weight_kg", Source::Healthkit));
    }

    #[test]
    fn rejects_unknown_names() {
        assert!(PriorityRule::from_json(r#"{"fields": {"mood": ["manual"]}}"#).is_err());
        assert!(PriorityRule::from_json(r#"{"default": ["fitbit"]}"#).is_err());
        assert!(PriorityRule::from_json(r#"{"default": ["manual", "manual"]}"#).is_err());
    }
}
