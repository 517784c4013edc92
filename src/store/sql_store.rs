//! The store over any `Backend`: what each call does, in which transaction, with which
//! statements. `SqliteStore` and `PostgresStore` are this type over their backends.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::broadcast;

use super::backend::{Backend, Upgrade};
use super::group::{GroupCommit, GroupWriter};
use super::projector::{self, Append, AppendOutcome, Writing};
use super::roster::{self, Clients, Published, SyncNotices};
use super::rows::{EntryRow, RemovalRow, SyncRow, TokenRow};
use super::rules::{RuleCache, StoredRule, VersionedRule};
use super::{
    access, erasure, new_id, now, rebuild, rehash, Access, FeedChange, FeedFilter, FeedPage, FeedRecord,
    ImportedClient, LoggedAccess, Mismatch, Paired, PoolUse, RebuildStats, Removal, RosterClient, Store, StoreError,
    StoreOptions, StoreResult, StoredEntry, Synced, TokenOwner,
};
use crate::domain::event::{NewEvent, StoredEvent};
use crate::domain::priority::PriorityRule;

pub struct SqlStore<B> {
    backend: Arc<B>,
    appends: GroupCommit,
    rules: Arc<RuleCache>,
}

impl<B> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        SqlStore { backend: self.backend.clone(), appends: self.appends.clone(), rules: self.rules.clone() }
    }
}

impl<B: Backend> SqlStore<B> {
    /// Starts the store on an open backend with `lanes` group-commit lanes (transactions
    /// in flight at once), and brings stored content hashes to the current form.
    pub(crate) async fn start(backend: B, lanes: usize, options: &StoreOptions) -> StoreResult<SqlStore<B>> {
        let (backend, rules) = (Arc::new(backend), Arc::new(RuleCache::default()));
        let notices = Arc::new(SyncNotices::new(options.sync_notice_every));
        tokio::spawn(roster::trailing_notices(Arc::downgrade(&backend), notices.clone()));
        let appender = Appender {
            backend: backend.clone(),
            rules: rules.clone(),
            notices,
            max_events_per_day: options.max_events_per_day,
        };
        let appends = GroupCommit::start(Arc::new(appender), lanes, options.write_queue);
        rehash::upgrade_content_hashes(backend.as_ref()).await?;
        Ok(SqlStore { backend, appends, rules })
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    #[cfg(test)]
    pub(crate) fn rules(&self) -> &Arc<RuleCache> {
        &self.rules
    }

    /// Stores `rule` as the next version; returns the version.
    pub(crate) async fn store_priority_rule(&self, rule: &PriorityRule, set_by: &str) -> StoreResult<i64> {
        let mut write = self.backend.write_rule().await?;
        let version = B::rule_version(&mut write).await? + 1;
        B::insert_priority_rule(&mut write, version, &rule.to_json(), set_by, now()).await?;
        B::commit(write).await?;
        tracing::info!(version, set_by, "priority rule set");
        Ok(version)
    }

    /// Re-folds every day under the rule in force, then records that this release's fold
    /// and that rule (if it is still the one in force) have been applied.
    async fn refold_everything(&self) -> StoreResult<RebuildStats> {
        use crate::domain::fold::VERSION;
        let started_under = self.rules.current::<B>(&mut *self.backend.reader().await?).await?.version;
        let stats = rebuild::rebuild(&self.backend, &self.rules, None).await?;
        let mut write = self.backend.write_rule().await?;
        B::mark_upgraded(&mut write, Upgrade::Fold, VERSION, now()).await?;
        // A rule set meanwhile is applied by its own pass.
        if B::rule_version(&mut write).await? == started_under {
            B::mark_rule_applied(&mut write, started_under, now()).await?;
        }
        B::commit(write).await?;
        Ok(stats)
    }
}

/// Writes a group of appends in one transaction of the backend.
struct Appender<B> {
    backend: Arc<B>,
    rules: Arc<RuleCache>,
    notices: Arc<SyncNotices>,
    max_events_per_day: usize,
}

impl<B: Backend> GroupWriter for Appender<B> {
    #[tracing::instrument(level = "debug", name = "store.group_commit", skip_all, fields(requests = group.len()))]
    async fn append_group(&self, group: &[Append<'_>]) -> StoreResult<Vec<Vec<AppendOutcome>>> {
        let users = projector::distinct_users(group.iter().map(|append| append.user_id));
        let mut write = self.backend.write(&users).await?;
        let writing =
            Writing { rules: &self.rules, notices: &self.notices, max_events_per_day: self.max_events_per_day };
        let (outcomes, changed) = projector::append::<B>(&mut write, group, &writing, now()).await?;
        self.backend.commit_and_publish(write, changed).await?;
        Ok(outcomes)
    }
}

/// The write lock that serializes changes to a coach's tokens (in the same lock space as
/// users' ids, which never start with `coach:`).
fn coach_lock(coach_id: &str) -> String {
    format!("coach:{coach_id}")
}

impl<B: Backend> Store for SqlStore<B> {
    async fn ping(&self) -> StoreResult<()> {
        B::ping(&mut *self.backend.reader().await?).await
    }

    async fn refresh_statistics(&self) -> StoreResult<()> {
        B::refresh_statistics(&mut *self.backend.reader().await?).await
    }

    #[tracing::instrument(level = "debug", name = "store.token_owners", skip_all)]
    async fn token_owners(&self, token_hashes: &[&str]) -> StoreResult<Vec<(String, TokenOwner)>> {
        let rows = B::live_tokens(&mut *self.backend.reader().await?, token_hashes).await?;
        rows.into_iter().map(TokenRow::into_owner).collect()
    }

    async fn coach_of(&self, user_id: &str) -> StoreResult<Option<String>> {
        B::coach_of(&mut *self.backend.reader().await?, user_id).await
    }

    async fn create_coach(&self, name: &str, token_hash: &str) -> StoreResult<String> {
        let (coach_id, now) = (new_id(), now());
        let mut write = self.backend.write(&[]).await?;
        B::insert_coach(&mut write, &coach_id, name, now).await?;
        B::insert_coach_token(&mut write, token_hash, &coach_id, now).await?;
        B::commit(write).await?;
        Ok(coach_id)
    }

    async fn rotate_coach_token(&self, coach_id: &str, token_hash: &str, presented: Option<&str>) -> StoreResult<bool> {
        let now = now();
        let mut write = self.backend.write(&[&coach_lock(coach_id)]).await?;
        if !B::coach_exists(&mut write, coach_id).await? {
            return Ok(false);
        }
        if let Some(presented) = presented {
            if B::live_tokens(&mut write, &[presented]).await?.is_empty() {
                return Ok(false);
            }
        }
        B::revoke_coach_tokens(&mut write, coach_id, now).await?;
        B::insert_coach_token(&mut write, token_hash, coach_id, now).await?;
        B::commit(write).await?;
        Ok(true)
    }

    async fn revoke_coach(&self, coach_id: &str) -> StoreResult<Option<u32>> {
        let now = now();
        let mut write = self.backend.write(&[&coach_lock(coach_id)]).await?;
        if !B::coach_exists(&mut write, coach_id).await? {
            return Ok(None);
        }
        let revoked = B::revoke_coach_tokens(&mut write, coach_id, now).await?;
        B::expire_pairing_codes_of(&mut write, coach_id, now).await?;
        B::commit(write).await?;
        Ok(Some(revoked as u32))
    }

    async fn create_client(
        &self,
        coach_id: &str,
        display_name: Option<&str>,
        device_name: &str,
        token_hash: &str,
    ) -> StoreResult<Option<String>> {
        let (user_id, now) = (new_id(), now());
        let mut write = self.backend.write(&[]).await?;
        if !B::coach_exists(&mut write, coach_id).await? {
            return Ok(None);
        }
        B::ensure_user(&mut write, &user_id, coach_id, display_name, now).await?;
        B::insert_device_token(&mut write, token_hash, &user_id, &new_id(), device_name, now).await?;
        let clients = roster::touch::<B>(&mut write, &[&user_id]).await?;
        self.backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
        Ok(Some(user_id))
    }

    async fn import_coach(&self, coach_id: &str, name: &str, token_hash: &str) -> StoreResult<bool> {
        let now = now();
        let mut write = self.backend.write(&[&coach_lock(coach_id)]).await?;
        if B::coach_exists(&mut write, coach_id).await? {
            return Ok(false);
        }
        B::insert_coach(&mut write, coach_id, name, now).await?;
        B::insert_coach_token(&mut write, token_hash, coach_id, now).await?;
        B::commit(write).await?;
        Ok(true)
    }

    async fn import_client(
        &self,
        user_id: &str,
        coach_id: &str,
        display_name: Option<&str>,
    ) -> StoreResult<Option<ImportedClient>> {
        // The user's lock, as an erasure takes it: the two are ordered either way.
        let mut write = self.backend.write(&[user_id]).await?;
        if let Some(coach_id) = B::coach_of(&mut write, user_id).await? {
            return Ok(Some(ImportedClient::Existing { coach_id }));
        }
        if B::was_removed(&mut write, user_id).await? {
            return Ok(Some(ImportedClient::Erased));
        }
        if !B::coach_exists(&mut write, coach_id).await? {
            return Ok(None);
        }
        B::ensure_user(&mut write, user_id, coach_id, display_name, now()).await?;
        let clients = roster::touch::<B>(&mut write, &[user_id]).await?;
        self.backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
        Ok(Some(ImportedClient::Added))
    }

    async fn rename_client(&self, user_id: &str, display_name: &str) -> StoreResult<bool> {
        let mut write = self.backend.write(&[]).await?;
        if !B::rename_user(&mut write, user_id, display_name).await? {
            return Ok(false);
        }
        let clients = roster::touch::<B>(&mut write, &[user_id]).await?;
        self.backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
        Ok(true)
    }

    #[tracing::instrument(level = "debug", name = "store.roster", skip(self))]
    async fn roster(&self, coach_id: &str) -> StoreResult<Vec<RosterClient>> {
        roster::read_clients::<B>(&mut *self.backend.reader().await?, Clients::OfCoach(coach_id)).await
    }

    async fn synced_by(&self, user_id: &str, actor: &str) -> StoreResult<Vec<Synced>> {
        let rows = B::sync_of_actor(&mut *self.backend.reader().await?, user_id, actor).await?;
        rows.into_iter().map(SyncRow::into_synced).collect()
    }

    async fn create_pairing_code(
        &self,
        coach_id: &str,
        user_id: Option<&str>,
        display_name: Option<&str>,
        code_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<String>> {
        let now = now();
        // An existing client's lock: an erasure of theirs is either seen here or waits for
        // this code, and deletes it.
        let mut write = self.backend.write(user_id.as_slice()).await?;
        let user_id = match user_id {
            Some(user_id) => {
                if B::coach_of(&mut write, user_id).await?.as_deref() != Some(coach_id) {
                    return Ok(None);
                }
                user_id.to_string()
            }
            None => {
                if !B::coach_exists(&mut write, coach_id).await? {
                    return Ok(None);
                }
                new_id()
            }
        };
        B::insert_pairing_code(&mut write, code_hash, coach_id, &user_id, display_name, now, expires_at).await?;
        B::commit(write).await?;
        Ok(Some(user_id))
    }

    #[tracing::instrument(level = "debug", name = "store.redeem_pairing_code", skip_all)]
    async fn redeem_pairing_code(
        &self,
        code_hash: &str,
        device_name: &str,
        token_hash: &str,
    ) -> StoreResult<Option<Paired>> {
        let now = now();
        let mut write = self.backend.write(&[]).await?;
        let Some((user_id, coach_id, display_name)) = B::claim_pairing_code(&mut write, code_hash, now).await? else {
            return Ok(None);
        };
        B::ensure_user(&mut write, &user_id, &coach_id, display_name.as_deref(), now).await?;
        let device_id = new_id();
        B::insert_device_token(&mut write, token_hash, &user_id, &device_id, device_name, now).await?;
        let clients = roster::touch::<B>(&mut write, &[&user_id]).await?;
        self.backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
        Ok(Some(Paired { user_id, coach_id, device_id }))
    }

    async fn revoke_devices(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u32> {
        let mut write = self.backend.write(&[]).await?;
        let revoked = B::revoke_devices(&mut write, user_id, device_id, now()).await?;
        let touched = if revoked > 0 { vec![user_id] } else { vec![] };
        let clients = roster::touch::<B>(&mut write, &touched).await?;
        self.backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
        Ok(revoked as u32)
    }

    async fn erase_user(&self, user_id: &str, by: &str) -> StoreResult<Option<Removal>> {
        erasure::erase(self.backend.as_ref(), user_id, by).await
    }

    async fn log_accesses(&self, accesses: &[Access]) -> StoreResult<()> {
        access::append(self.backend.as_ref(), accesses).await
    }

    async fn access_log(&self, user_id: &str, before: Option<i64>, limit: u32) -> StoreResult<Vec<LoggedAccess>> {
        access::read::<B>(&mut *self.backend.reader().await?, user_id, before, limit).await
    }

    #[tracing::instrument(level = "debug", name = "store.append", skip(self, events), fields(events = events.len()))]
    async fn append(&self, user_id: &str, actor: &str, events: Vec<NewEvent>) -> StoreResult<Vec<AppendOutcome>> {
        self.appends.append(user_id, actor, events).await
    }

    #[tracing::instrument(level = "debug", name = "store.get_entry", skip(self))]
    async fn get_entry(&self, user_id: &str, day: NaiveDate) -> StoreResult<Option<StoredEntry>> {
        let row = B::entry(&mut *self.backend.reader().await?, user_id, day).await?;
        row.map(EntryRow::into_entry).transpose()
    }

    #[tracing::instrument(level = "debug", name = "store.list_entries", skip(self))]
    async fn list_entries(
        &self,
        user_id: &str,
        start: NaiveDate,
        end: NaiveDate,
        after: Option<NaiveDate>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEntry>> {
        let rows = B::entries(&mut *self.backend.reader().await?, user_id, start, end, after, limit).await?;
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    async fn user_events(&self, user_id: &str, after_seq: i64, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let rows = B::user_events(&mut *self.backend.reader().await?, user_id, after_seq, limit).await?;
        Ok(rows.into_iter().map(|(_, event)| event).collect())
    }

    #[tracing::instrument(level = "debug", name = "store.fold_input", skip(self))]
    async fn fold_input(&self, user_id: &str, day: NaiveDate) -> StoreResult<Vec<StoredEvent>> {
        projector::fold_input::<B>(&mut *self.backend.reader().await?, user_id, day).await
    }

    fn changes(&self) -> broadcast::Receiver<Arc<FeedChange>> {
        self.backend.subscribe()
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        self.backend.pools()
    }

    async fn head_position(&self) -> StoreResult<i64> {
        B::feed_head(&mut *self.backend.feed_reader().await?).await
    }

    #[tracing::instrument(level = "debug", name = "store.feed_page", skip(self, filter))]
    async fn feed_page(
        &self,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
        clients: bool,
    ) -> StoreResult<FeedPage> {
        let mut conn = self.backend.feed_reader().await?;
        let rows = B::feed_rows(&mut conn, filter, after, up_to, limit).await?;
        let removed = B::removal_rows(&mut conn, filter, after, up_to, limit).await?;
        let touched = match clients {
            true => B::roster_rows(&mut conn, filter, after, up_to, limit).await?,
            false => Vec::new(),
        };
        let pages = [
            (rows.len(), rows.last().map(|row| row.position)),
            (removed.len(), removed.last().map(|row| row.position)),
            (touched.len(), touched.last().map(|t| t.1)),
        ];
        let read_to = roster::read_to(up_to, limit as usize, pages);
        let clients = roster::clients_read_to::<B>(&mut conn, touched, read_to).await?;
        let entries = rows.into_iter().filter(|row| row.position <= read_to).filter_map(EntryRow::into_readable_entry);
        let removals = removed.into_iter().filter(|row| row.position <= read_to).map(RemovalRow::into_removal);
        let mut records: Vec<FeedRecord> = entries
            .map(|entry| FeedRecord::Entry(Arc::new(entry)))
            .chain(clients.into_iter().map(|client| FeedRecord::Client(Arc::new(client))))
            .chain(removals.map(|removal| FeedRecord::Removal(Arc::new(removal))))
            .collect();
        records.sort_by_key(FeedRecord::position);
        Ok(FeedPage { records, read_to })
    }

    #[tracing::instrument(level = "debug", name = "store.recompute_day", skip(self))]
    async fn recompute_day(&self, user_id: &str, day: NaiveDate) -> StoreResult<Option<StoredEntry>> {
        let mut write = self.backend.write(&[user_id]).await?;
        let rule = self.rules.current::<B>(&mut write).await?;
        let entries = projector::refold_days::<B>(&mut write, &[(user_id, day)], &rule, now()).await?;
        let entry = B::entry(&mut write, user_id, day).await?.map(EntryRow::into_entry).transpose()?;
        self.backend.commit_and_publish(write, Published { entries, ..Published::default() }).await?;
        Ok(entry)
    }

    #[tracing::instrument(level = "info", name = "store.rebuild", skip(self))]
    async fn rebuild(&self, user_id: Option<&str>) -> StoreResult<RebuildStats> {
        rebuild::rebuild(&self.backend, &self.rules, user_id).await
    }

    #[tracing::instrument(level = "info", name = "store.verify", skip(self))]
    async fn verify(&self) -> StoreResult<Vec<Mismatch>> {
        rebuild::verify(self.backend.as_ref(), &self.rules).await
    }

    async fn fold_is_current(&self) -> StoreResult<bool> {
        let mut conn = self.backend.reader().await?;
        let fold = B::upgraded(&mut conn, Upgrade::Fold, crate::domain::fold::VERSION).await?;
        Ok(fold && self.rules.describe::<B>(&mut conn).await?.applied)
    }

    async fn refold_if_stale(&self) -> StoreResult<Option<RebuildStats>> {
        if self.fold_is_current().await? {
            return Ok(None);
        }
        tracing::info!("stored days were folded by an earlier fold or rule; re-folding every day");
        let stats = self.refold_everything().await?;
        tracing::info!(days = stats.days_rebuilt, changed = stats.days_changed, "every day re-folded");
        Ok(Some(stats))
    }

    async fn priority_rule(&self) -> StoreResult<StoredRule> {
        self.rules.describe::<B>(&mut *self.backend.reader().await?).await
    }

    async fn priority_rule_at(&self, version: i64) -> StoreResult<Arc<VersionedRule>> {
        self.rules.at::<B>(&mut *self.backend.reader().await?, version).await
    }

    #[tracing::instrument(level = "info", name = "store.set_priority_rule", skip(self, rule))]
    async fn set_priority_rule(&self, rule: &PriorityRule, set_by: &str) -> StoreResult<(i64, RebuildStats)> {
        // Setting the rule in force again (a retried call) stores no new version, and
        // re-folds only if that rule's re-fold has not finished.
        let stored = self.priority_rule().await?;
        let version = match stored.current.rule.to_json() == rule.to_json() {
            true if stored.applied => return Ok((stored.current.version, RebuildStats::default())),
            true => stored.current.version,
            false => self.store_priority_rule(rule, set_by).await?,
        };
        // In a task of its own, so that a caller that stops waiting does not stop it halfway.
        let store = self.clone();
        let pass = tokio::spawn(async move { store.refold_everything().await });
        let stats = match pass.await {
            Ok(done) => done?,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => return Err(StoreError::Closed),
            },
        };
        tracing::info!(version, days = stats.days_rebuilt, changed = stats.days_changed, "priority rule applied");
        Ok((version, stats))
    }
}
