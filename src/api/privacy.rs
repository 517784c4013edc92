//! PrivacyService: a person's data. A device deletes its own account; an admin erases any
//! user; the user, their coach or an admin exports it (docs/PRIVACY.md).

use std::pin::Pin;

use futures::{stream, Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::Principal;
use super::convert;
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::validate::identifier;
use crate::domain::{reason, Violation};
use crate::export::{self, ExportRecord};
use crate::proto::v1 as pb;
use crate::proto::v1::privacy_service_server::PrivacyService;
use crate::store::{Removal, Store};

/// Access-log records per page unless asked otherwise, and at most.
const DEFAULT_ACCESS_PAGE: u32 = 100;
const MAX_ACCESS_PAGE: u32 = 1000;

pub struct PrivacyApi<S> {
    state: AppState<S>,
}

impl<S> PrivacyApi<S> {
    pub fn new(state: AppState<S>) -> Self {
        PrivacyApi { state }
    }
}

impl<S: Store> PrivacyApi<S> {
    async fn erase(&self, user_id: &str, principal: &Principal) -> ApiResult<Option<Removal>> {
        Ok(self.state.store.erase_user(user_id, &principal.actor()).await?)
    }
}

#[tonic::async_trait]
impl<S: Store> PrivacyService for PrivacyApi<S> {
    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let principal = self.state.auth.principal(&request, "DeleteAccount").await?;
        let Principal::Device { user_id, .. } = &principal else {
            let message = "an account is deleted from its own device; an admin erases a user with EraseUser";
            return Err(ApiError::PermissionDenied(message.into()).into());
        };
        let erased_at = match self.erase(user_id, &principal).await? {
            Some(removal) => removal.removed_at,
            // Erased meanwhile by another call of theirs: as good as done.
            None => crate::store::now(),
        };
        Ok(Response::new(pb::DeleteAccountResponse { erased_at: Some(convert::timestamp(erased_at)) }))
    }

    type ExportUserDataStream = Pin<Box<dyn Stream<Item = Result<pb::ExportUserDataResponse, Status>> + Send>>;

    async fn export_user_data(
        &self,
        request: Request<pb::ExportUserDataRequest>,
    ) -> Result<Response<Self::ExportUserDataStream>, Status> {
        let reader = self.state.auth.reader(&request, "ExportUserData", &request.get_ref().user_id).await?;
        self.state.access_log.record(&reader, "ExportUserData", String::new()).await;
        let user_id = reader.user_id;
        use pb::export_user_data_response::Record;
        let header = pb::ExportHeader {
            format: export::FORMAT.into(),
            version: export::VERSION,
            user_id: user_id.clone(),
            exported_at: Some(convert::timestamp(crate::store::now())),
        };
        let records = export::records(self.state.store.clone(), user_id).map(|record| {
            let record = match record.map_err(ApiError::from)? {
                ExportRecord::Event(event) => Record::Event(convert::event_record(&event)),
                ExportRecord::Entry(entry) => Record::Entry(convert::entry(&entry)),
            };
            Ok(pb::ExportUserDataResponse { record: Some(record) })
        });
        let header = stream::once(async { Ok(pb::ExportUserDataResponse { record: Some(Record::Header(header)) }) });
        Ok(Response::new(Box::pin(header.chain(records))))
    }

    async fn list_access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        let principal = self.state.auth.principal(&request, "ListAccessLog").await?;
        if let Principal::Coach { .. } = principal {
            let message = "a client's access log is for the client and for admins";
            return Err(ApiError::PermissionDenied(message.into()).into());
        }
        let r = request.get_ref();
        let user_id = self.state.auth.user_for(&principal, &r.user_id).await?;
        let page_size = match r.page_size {
            0 => DEFAULT_ACCESS_PAGE,
            n => n.min(MAX_ACCESS_PAGE),
        };
        let before = match r.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().ok().filter(|seq| *seq > 0).ok_or_else(|| {
                ApiError::invalid_one(Violation::new(
                    "page_token",
                    reason::INVALID_FORMAT,
                    "not a page token from this call",
                ))
            })?),
        };
        // What this instance recorded before the call is in the log.
        self.state.access_log.flushed().await;
        let logged = self.state.store.access_log(&user_id, before, page_size).await?;
        let next_page_token = match logged.last() {
            Some(last) if logged.len() == page_size as usize => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAccessLogResponse {
            records: logged.iter().map(|logged| convert::access(&logged.access)).collect(),
            next_page_token,
        }))
    }

    async fn erase_user(
        &self,
        request: Request<pb::EraseUserRequest>,
    ) -> Result<Response<pb::EraseUserResponse>, Status> {
        let principal = self.state.auth.principal(&request, "EraseUser").await?;
        self.state.auth.require_admin(&principal)?;
        let user_id = &request.get_ref().user_id;
        identifier("user_id", user_id).map_err(ApiError::invalid_one)?;
        let removal = self.erase(user_id, &principal).await?;
        Ok(Response::new(pb::EraseUserResponse {
            erased: removal.is_some(),
            position: removal.map_or(0, |removal| removal.position as u64),
        }))
    }
}
