//! Authentication (bearer token → principal) and authorization (may this principal act
//! for this user?).

use tonic::Request;

use super::access_log::Reader;
use super::status::{ApiError, ApiResult};
use super::token_lookups::TokenLookups;
use crate::accounts::hash_token;
use crate::domain::validate::identifier;
use crate::store::{Store, TokenOwner};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Coach { coach_id: String },
    Device { user_id: String, device_id: String },
}

impl Principal {
    /// How events written by this principal name their author.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".to_string(),
            Principal::Coach { coach_id } => format!("coach:{coach_id}"),
            Principal::Device { device_id, .. } => format!("device:{device_id}"),
        }
    }
}

/// The bearer token a request presents, if any.
pub fn bearer_token<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The IP address a call came from; empty when the transport does not say.
pub fn peer<T>(request: &Request<T>) -> String {
    request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default()
}

/// Resolves bearer tokens against the store and the configured admin token.
#[derive(Clone)]
pub struct Authenticator<S> {
    store: S,
    tokens: TokenLookups,
    admin_token_hash: Option<String>,
}

impl<S: Store> Authenticator<S> {
    /// Starts the task that looks tokens up (inside a tokio runtime).
    pub fn new(store: S, admin_token: Option<&str>) -> Self {
        let tokens = TokenLookups::start(store.clone());
        Authenticator { store, tokens, admin_token_hash: admin_token.filter(|t| !t.is_empty()).map(hash_token) }
    }

    /// The caller of `request`. Failures are logged with the peer and the RPC, never the token.
    pub async fn principal<T>(&self, request: &Request<T>, rpc: &str) -> ApiResult<Principal> {
        let peer = peer(request);
        let Some(token) = bearer_token(request) else {
            tracing::info!(rpc, %peer, "rejected call without a bearer token");
            return Err(ApiError::Unauthenticated);
        };
        let hash = hash_token(token);
        // Comparing hashes keeps the comparison independent of the secret's bytes.
        if self.admin_token_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal::Admin);
        }
        match self.tokens.owner(hash).await? {
            Some(TokenOwner::Coach { coach_id }) => Ok(Principal::Coach { coach_id }),
            Some(TokenOwner::Device { user_id, device_id }) => Ok(Principal::Device { user_id, device_id }),
            None => {
                tracing::info!(rpc, %peer, "rejected call with an unknown or revoked token");
                Err(ApiError::Unauthenticated)
            }
        }
    }

    /// The user a call acts on: `requested`, or the device's own user when empty.
    /// Someone else's user is `PERMISSION_DENIED`, never a silent filter.
    pub async fn user_for(&self, principal: &Principal, requested: &str) -> ApiResult<String> {
        if !matches!(principal, Principal::Device { .. }) && !requested.is_empty() {
            identifier("user_id", requested).map_err(ApiError::invalid_one)?;
        }
        match principal {
            Principal::Device { user_id, .. } if requested.is_empty() || requested == user_id => Ok(user_id.clone()),
            Principal::Device { .. } => Err(ApiError::PermissionDenied("a device acts only for its own user".into())),
            _ if requested.is_empty() => Err(ApiError::invalid_one(crate::domain::Violation::new(
                "user_id",
                crate::domain::reason::REQUIRED,
                "required for coach and admin tokens (a device token acts for its own user)",
            ))),
            Principal::Admin => match self.store.coach_of(requested).await? {
                Some(_) => Ok(requested.to_string()),
                None => Err(ApiError::NotFound(format!("no user {requested}"))),
            },
            Principal::Coach { coach_id } => match self.store.coach_of(requested).await? {
                Some(coach) if coach == *coach_id => Ok(requested.to_string()),
                _ => Err(ApiError::PermissionDenied("this user is not one of your clients".into())),
            },
        }
    }

    /// The caller and the user whose data they ask to read (`user_for`), and where from.
    pub async fn reader<T>(&self, request: &Request<T>, rpc: &str, requested: &str) -> ApiResult<Reader> {
        let principal = self.principal(request, rpc).await?;
        let user_id = self.user_for(&principal, requested).await?;
        Ok(Reader { principal, user_id, peer: peer(request) })
    }

    pub fn require_admin(&self, principal: &Principal) -> ApiResult<()> {
        match principal {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::PermissionDenied("an admin token is required".into())),
        }
    }
}
