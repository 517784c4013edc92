//! RosterService: a coach's clients and whether their phones sync; a device's own view of
//! what the server stored from it.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tonic::{Request, Response, Status};

use super::auth::Principal;
use super::convert::timestamp;
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::validate::{check_text, identifier, TextKind, MAX_NAME_CHARS};
use crate::proto::v1 as pb;
use crate::proto::v1::roster_service_server::RosterService;
use crate::store::{RosterClient, Store, Synced};

pub struct RosterApi<S> {
    state: AppState<S>,
}

impl<S> RosterApi<S> {
    pub fn new(state: AppState<S>) -> Self {
        RosterApi { state }
    }
}

#[tonic::async_trait]
impl<S: Store> RosterService for RosterApi<S> {
    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        let principal = self.state.auth.principal(&request, "ListClients").await?;
        let coach_id = coach_named(&principal, &request.get_ref().coach_id)?;
        // Before the roster: a stream from here sees every change after the read.
        let position = self.state.store.head_position().await?;
        let roster = self.state.store.roster(&coach_id).await?;
        let now = Utc::now();
        let stale_after_days = self.state.stale_after_days;
        Ok(Response::new(pb::ListClientsResponse {
            clients: roster.iter().map(|client| client_status(client, now, stale_after_days)).collect(),
            as_of: Some(timestamp(now)),
            stale_after_days,
            position: position as u64,
        }))
    }

    async fn rename_client(
        &self,
        request: Request<pb::RenameClientRequest>,
    ) -> Result<Response<pb::RenameClientResponse>, Status> {
        let principal = self.state.auth.principal(&request, "RenameClient").await?;
        let r = request.get_ref();
        if matches!(principal, Principal::Device { .. }) {
            return Err(ApiError::PermissionDenied("a client's coach names them".into()).into());
        }
        let user_id = self.state.auth.user_for(&principal, &r.user_id).await?;
        let name = r.display_name.trim();
        check_text("display_name", name, TextKind::Identifier, 1, MAX_NAME_CHARS).map_err(ApiError::invalid_one)?;
        if !self.state.store.rename_client(&user_id, name).await? {
            return Err(ApiError::NotFound(format!("no user {user_id}")).into());
        }
        Ok(Response::new(pb::RenameClientResponse {}))
    }

    async fn get_sync_status(
        &self,
        request: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::GetSyncStatusResponse>, Status> {
        let principal = self.state.auth.principal(&request, "GetSyncStatus").await?;
        let Principal::Device { user_id, .. } = &principal else {
            return Err(ApiError::PermissionDenied("a device asks what it has sent".into()).into());
        };
        let synced = self.state.store.synced_by(user_id, &principal.actor()).await?;
        Ok(Response::new(pb::GetSyncStatusResponse {
            kinds: synced.iter().map(kind_status).collect(),
            last_synced_at: synced.iter().map(|s| s.last_stored_at).max().map(timestamp),
        }))
    }
}

/// The coach whose roster `principal` may read: their own, or any for an admin.
fn coach_named(principal: &Principal, requested: &str) -> ApiResult<String> {
    match principal {
        Principal::Coach { coach_id } if requested.is_empty() || requested == coach_id => Ok(coach_id.clone()),
        Principal::Admin => {
            identifier("coach_id", requested).map_err(ApiError::invalid_one)?;
            Ok(requested.to_string())
        }
        _ => Err(ApiError::PermissionDenied("a coach reads their own roster".into())),
    }
}

/// A client as the roster shows it at `now`.
pub(super) fn client_status(client: &RosterClient, now: DateTime<Utc>, stale_after_days: u32) -> pb::ClientStatus {
    let devices = client
        .devices
        .iter()
        .map(|device| {
            let actor = format!("device:{}", device.device_id);
            let sent: Vec<&Synced> = client.synced.iter().filter(|s| s.actor == actor).collect();
            pb::DeviceStatus {
                device_id: device.device_id.clone(),
                name: device.name.clone(),
                paired_at: Some(timestamp(device.paired_at)),
                revoked: device.revoked,
                last_synced_at: sent.iter().map(|s| s.last_stored_at).max().map(timestamp),
                kinds: sent.into_iter().map(kind_status).collect(),
            }
        })
        .collect();
    // Only what the client's devices sent says whether the client is tracking; a coach's
    // correction does not.
    let newest = client.synced.iter().filter(|s| s.actor.starts_with("device:")).map(|s| s.newest_observed_at).max();
    let last_day = client.synced.iter().filter_map(|s| s.last_day).max();
    let stale_at = stale_at(newest, client.added_at, Duration::days(i64::from(stale_after_days)));
    pb::ClientStatus {
        user_id: client.user_id.clone(),
        display_name: client.display_name.clone().unwrap_or_default(),
        devices,
        kinds: per_kind(&client.synced).iter().map(kind_status).collect(),
        last_day: last_day.map(|day| day.to_string()).unwrap_or_default(),
        stale: stale_at < now,
        added_at: Some(timestamp(client.added_at)),
        stale_at: Some(timestamp(stale_at)),
    }
}

/// When a client turns stale: `stale_after` past the newest observation their devices sent;
/// for a client who has sent nothing, past when they were added.
fn stale_at(
    newest_observation: Option<DateTime<Utc>>,
    added_at: DateTime<Utc>,
    stale_after: Duration,
) -> DateTime<Utc> {
    newest_observation.unwrap_or(added_at) + stale_after
}

/// `synced` summed over authors, per kind.
fn per_kind(synced: &[Synced]) -> Vec<Synced> {
    let mut kinds: Vec<Synced> = Vec::new();
    for s in synced {
        match kinds.iter_mut().find(|k| k.kind == s.kind) {
            Some(k) => {
                k.events += s.events;
                k.newest_observed_at = k.newest_observed_at.max(s.newest_observed_at);
                k.last_stored_at = k.last_stored_at.max(s.last_stored_at);
                k.last_day = k.last_day.max(s.last_day);
            }
            None => kinds.push(Synced { actor: String::new(), ..s.clone() }),
        }
    }
    kinds.sort_by(|a, b| a.kind.cmp(&b.kind));
    kinds
}

fn kind_status(s: impl std::borrow::Borrow<Synced>) -> pb::KindStatus {
    let s = s.borrow();
    pb::KindStatus {
        kind: s.kind.clone(),
        events: s.events,
        newest_observed_at: Some(timestamp(s.newest_observed_at)),
        last_day: s.last_day.map(|day: NaiveDate| day.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_client_is_stale_after_the_days_without_a_new_observation() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let added = now - Duration::days(30);
        let three_days = Duration::days(3);
        let is_stale = |newest, added| stale_at(newest, added, three_days) < now;
        assert!(!is_stale(Some(now - Duration::hours(71)), added));
        assert!(is_stale(Some(now - Duration::hours(73)), added));
        assert!(!is_stale(None, now - Duration::days(1)), "just added, nothing sent yet");
        assert!(is_stale(None, added), "added a month ago, nothing sent");
    }
}
