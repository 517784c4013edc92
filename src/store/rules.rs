//! The priority rule in force: stored with a version, read by every write transaction (an
//! append reads the version in its insert statement), so that every instance (and a CLI on
//! the same SQLite file) folds with the newest rule from its next write after the rule's
//! commit. The rule itself is read and parsed once per version per instance.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::backend::Backend;
use super::rows::RuleRow;
use super::{StoreError, StoreResult};
use crate::domain::priority::PriorityRule;

/// A rule and the version it is stored as (0: the built-in default, never stored).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedRule {
    pub version: i64,
    pub rule: PriorityRule,
}

/// The rule in force, as `Store::priority_rule` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    pub current: Arc<VersionedRule>,
    /// Who set it and when (`None` for the built-in default).
    pub set: Option<(String, DateTime<Utc>)>,
    /// Whether every stored day has been re-folded under it.
    pub applied: bool,
}

/// The newest rule this instance has read, so that a write parses a rule only when its
/// version is new.
#[derive(Default)]
pub(crate) struct RuleCache {
    last: Mutex<Option<Arc<VersionedRule>>>,
}

impl RuleCache {
    /// The rule in force as `conn` sees it now.
    pub(crate) async fn current<B: Backend>(&self, conn: &mut B::Conn) -> StoreResult<Arc<VersionedRule>> {
        let version = B::rule_version(conn).await?;
        self.at::<B>(conn, version).await
    }

    /// The rule stored as `version` (read through `conn` unless it is the newest one read,
    /// which is what the write path asks for; an older one is not kept).
    pub(crate) async fn at<B: Backend>(&self, conn: &mut B::Conn, version: i64) -> StoreResult<Arc<VersionedRule>> {
        if let Some(last) = self.last.lock().expect("rule cache").as_ref().filter(|last| last.version == version) {
            return Ok(last.clone());
        }
        let rule = match version {
            0 => PriorityRule::default(),
            _ => parse(&stored::<B>(conn, version).await?)?,
        };
        let read = Arc::new(VersionedRule { version, rule });
        let mut last = self.last.lock().expect("rule cache");
        if last.as_ref().is_none_or(|last| last.version < version) {
            *last = Some(read.clone());
        }
        Ok(read)
    }

    /// The rule in force with who set it and whether it has been applied.
    pub(crate) async fn describe<B: Backend>(&self, conn: &mut B::Conn) -> StoreResult<StoredRule> {
        let current = self.current::<B>(conn).await?;
        if current.version == 0 {
            return Ok(StoredRule { current, set: None, applied: true });
        }
        let row = stored::<B>(conn, current.version).await?;
        let set = Some((row.set_by, row.set_at.0));
        Ok(StoredRule { current, set, applied: row.applied_at.is_some() })
    }
}

async fn stored<B: Backend>(conn: &mut B::Conn, version: i64) -> StoreResult<RuleRow> {
    B::priority_rule(conn, version)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("priority rule version {version} is missing")))
}

fn parse(row: &RuleRow) -> StoreResult<PriorityRule> {
    PriorityRule::from_json(&row.rule)
        .map_err(|e| StoreError::Corrupt(format!("priority rule version {}: {e}", row.version)))
}
