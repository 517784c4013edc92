//! PairingService: a coach hands a short code to a client, whose app redeems it for a
//! device token. Codes are single use, expire, and guessing them is throttled per peer.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tonic::{Request, Response, Status};

use super::auth::Principal;
use super::convert;
use super::status::ApiError;
use super::throttle::FailureThrottle;
use super::AppState;
use crate::accounts::{hash_token, new_token};
use crate::domain::validate::{check_text, identifier, TextKind, MAX_DEVICE_NAME_CHARS, MAX_NAME_CHARS};
use crate::domain::{reason, Violation};
use crate::proto::v1 as pb;
use crate::proto::v1::pairing_service_server::PairingService;
use crate::store::Store;

/// Characters of a pairing code: no 0/O, 1/I, so a code read aloud is typed right.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
pub const CODE_LENGTH: usize = 8;

#[derive(Debug, Clone)]
pub struct PairingOptions {
    pub code_ttl: Duration,
    /// Failed redeems from one client address before it is refused for `lockout`.
    pub max_failures: u32,
    pub lockout: Duration,
    /// Proxies whose `x-forwarded-for` names the client; from any other peer the header is
    /// ignored (a client could write anything in it).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for PairingOptions {
    fn default() -> Self {
        PairingOptions {
            code_ttl: Duration::from_secs(15 * 60),
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            trusted_proxies: Vec::new(),
        }
    }
}

pub struct PairingApi<S> {
    state: AppState<S>,
    code_ttl: Duration,
    throttle: FailureThrottle,
    trusted_proxies: Vec<IpAddr>,
}

impl<S> PairingApi<S> {
    pub fn new(state: AppState<S>, options: &PairingOptions) -> Self {
        PairingApi {
            state,
            code_ttl: options.code_ttl,
            throttle: FailureThrottle::new(options.max_failures, options.lockout),
            trusted_proxies: options.trusted_proxies.clone(),
        }
    }
}

/// The address a redeem counts against: the peer's, or, when the peer is a trusted proxy,
/// the nearest address in `x-forwarded-for` that is not itself a trusted proxy.
fn client_address<T>(request: &Request<T>, trusted: &[IpAddr]) -> IpAddr {
    let peer = request.remote_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = request.metadata().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let hops: Vec<IpAddr> = forwarded.flat_map(|v| v.split(',')).filter_map(|hop| hop.trim().parse().ok()).collect();
    hops.into_iter().rev().find(|hop| !trusted.contains(hop)).unwrap_or(peer)
}

fn new_code() -> String {
    let mut rng = rand::thread_rng();
    (0..CODE_LENGTH).map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// Upper-cases a typed code and drops the spaces and dashes people add; `None` when it cannot
/// be a code at all.
fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !matches!(c, ' ' | '-')).collect::<String>().to_ascii_uppercase();
    (code.len() == CODE_LENGTH && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// The same answer for unknown, expired and used codes, so none can be told apart.
fn no_such_code() -> Status {
    Status::not_found("no such pairing code, or it expired or was used; ask your coach for a new one")
}

#[tonic::async_trait]
impl<S: Store> PairingService for PairingApi<S> {
    async fn create_pairing_code(
        &self,
        request: Request<pb::CreatePairingCodeRequest>,
    ) -> Result<Response<pb::CreatePairingCodeResponse>, Status> {
        let principal = self.state.auth.principal(&request, "CreatePairingCode").await?;
        let Principal::Coach { coach_id } = principal else {
            return Err(ApiError::PermissionDenied("pairing codes are made by coaches".into()).into());
        };
        let r = request.get_ref();
        let user_id = r.user_id.as_deref().filter(|u| !u.is_empty());
        if let Some(user_id) = user_id {
            identifier("user_id", user_id).map_err(ApiError::invalid_one)?;
        }
        let display_name = Some(r.display_name.trim()).filter(|name| !name.is_empty());
        if let Some(name) = display_name {
            check_text("display_name", name, TextKind::Identifier, 1, MAX_NAME_CHARS).map_err(ApiError::invalid_one)?;
            if user_id.is_some() {
                let message = "names a new client only; RenameClient renames an existing one";
                return Err(ApiError::invalid_one(Violation::new("display_name", reason::INCONSISTENT, message)).into());
            }
        }
        let code = new_code();
        let expires_at =
            Utc::now() + chrono::Duration::from_std(self.code_ttl).unwrap_or(chrono::Duration::minutes(15));
        let store = &self.state.store;
        let stored = store.create_pairing_code(&coach_id, user_id, display_name, &hash_token(&code), expires_at).await;
        let user_id =
            stored?.ok_or_else(|| ApiError::PermissionDenied("this user is not one of your clients".into()))?;
        Ok(Response::new(pb::CreatePairingCodeResponse {
            code,
            user_id,
            expires_at: Some(convert::timestamp(expires_at)),
        }))
    }

    async fn redeem_pairing_code(
        &self,
        request: Request<pb::RedeemPairingCodeRequest>,
    ) -> Result<Response<pb::RedeemPairingCodeResponse>, Status> {
        let peer = client_address(&request, &self.trusted_proxies);
        let r = request.get_ref();
        let device_name = r.device_name.trim();
        check_text("device_name", device_name, TextKind::Identifier, 1, MAX_DEVICE_NAME_CHARS)
            .map_err(ApiError::invalid_one)?;
        let attempt = match self.throttle.begin(peer) {
            Ok(attempt) => attempt,
            Err(wait) => {
                crate::metrics::refused("pairing_lockout");
                tracing::warn!(%peer, "pairing refused: too many failed attempts");
                let message = format!("too many failed attempts; retry in {} s", wait.as_secs().max(1));
                return Err(ApiError::ResourceExhausted { message, retry: Some(wait) }.into());
            }
        };
        let Some(code) = normalize_code(&r.code) else {
            return Err(no_such_code());
        };
        let token = new_token();
        let redeemed = self.state.store.redeem_pairing_code(&hash_token(&code), device_name, &hash_token(&token)).await;
        match redeemed {
            // The database did not answer: not a guess that failed.
            Err(e) => {
                attempt.refund();
                Err(e.into())
            }
            Ok(Some(paired)) => {
                attempt.refund();
                tracing::info!(%peer, user_id = %paired.user_id, "device paired");
                Ok(Response::new(pb::RedeemPairingCodeResponse {
                    user_id: paired.user_id,
                    device_token: token,
                    coach_id: paired.coach_id,
                    device_id: paired.device_id,
                }))
            }
            Ok(None) => {
                tracing::info!(%peer, "pairing code not accepted");
                Err(no_such_code())
            }
        }
    }

    async fn revoke_device(
        &self,
        request: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        let principal = self.state.auth.principal(&request, "RevokeDevice").await?;
        let r = request.get_ref();
        let user_id = self.state.auth.user_for(&principal, &r.user_id).await?;
        let requested = r.device_id.as_deref().filter(|d| !d.is_empty());
        if let Some(device_id) = requested {
            identifier("device_id", device_id).map_err(ApiError::invalid_one)?;
        }
        let device_id = match (&principal, requested) {
            // A device revokes itself, and only itself.
            (Principal::Device { device_id, .. }, None) => Some(device_id.as_str()),
            (Principal::Device { device_id, .. }, Some(requested)) if requested == device_id => Some(requested),
            (Principal::Device { .. }, Some(_)) => {
                return Err(ApiError::PermissionDenied("a device can revoke only itself".into()).into())
            }
            (_, requested) => requested,
        };
        let revoked = self.state.store.revoke_devices(&user_id, device_id).await?;
        Ok(Response::new(pb::RevokeDeviceResponse { revoked }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_unambiguous_alphabet() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(normalize_code(&code), Some(code.clone()));
            assert!(!code.contains(['0', 'O', '1', 'I']));
        }
    }

    #[test]
    fn typed_codes_are_case_insensitive_and_forgive_spacing() {
        assert_eq!(normalize_code("abcd-ef23"), Some("ABCDEF23".into()));
        assert_eq!(normalize_code(" abcd ef23 "), Some("ABCDEF23".into()));
        assert_eq!(normalize_code("ABCDEF20"), None, "0 is not in the alphabet");
        assert_eq!(normalize_code("ABCDEF2"), None);
    }
}
