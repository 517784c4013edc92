//! PrivacyService: a person's data. A device deletes its own account; an admin erases any
//! user (docs/PRIVACY.md).

use tonic::{Request, Response, Status};

use super::auth::Principal;
use super::convert;
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::validate::identifier;
use crate::proto::v1 as pb;
use crate::proto::v1::privacy_service_server::PrivacyService;
use crate::store::{Removal, Store};

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
