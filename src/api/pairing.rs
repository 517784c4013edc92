//! PairingService: not built yet; every call answers UNIMPLEMENTED.

use tonic::{Request, Response, Status};

use crate::proto::v1 as pb;
use crate::proto::v1::pairing_service_server::PairingService;

pub struct PairingApi;

#[tonic::async_trait]
impl PairingService for PairingApi {
    async fn create_pairing_code(
        &self,
        _: Request<pb::CreatePairingCodeRequest>,
    ) -> Result<Response<pb::CreatePairingCodeResponse>, Status> {
        Err(Status::unimplemented("pairing is not available yet"))
    }

    async fn redeem_pairing_code(
        &self,
        _: Request<pb::RedeemPairingCodeRequest>,
    ) -> Result<Response<pb::RedeemPairingCodeResponse>, Status> {
        Err(Status::unimplemented("pairing is not available yet"))
    }

    async fn revoke_device(
        &self,
        _: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        Err(Status::unimplemented("pairing is not available yet"))
    }
}
