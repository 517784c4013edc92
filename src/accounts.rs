//! Coaches, clients and their tokens. A token is 256 random bits, shown once; the store
//! keeps only its SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreResult};

/// A new 256-bit random token, hex-encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new coach and their token: `(coach_id, coach_token)`.
pub async fn create_coach<S: Store>(store: &S, name: &str) -> StoreResult<(String, String)> {
    let token = new_token();
    let coach_id = store.create_coach(name, &hash_token(&token)).await?;
    Ok((coach_id, token))
}

/// A new token for `coach_id`, every earlier one revoked; `None` when the coach does not
/// exist, or when `presented` (the calling coach's own token) is no longer live.
pub async fn rotate_coach_token<S: Store>(
    store: &S,
    coach_id: &str,
    presented: Option<&str>,
) -> StoreResult<Option<String>> {
    let token = new_token();
    let presented = presented.map(hash_token);
    let rotated = store.rotate_coach_token(coach_id, &hash_token(&token), presented.as_deref()).await?;
    Ok(rotated.then_some(token))
}

/// A new client user of `coach_id` with one device token: `(user_id, device_token)`, or
/// `None` when the coach does not exist.
pub async fn create_client<S: Store>(
    store: &S,
    coach_id: &str,
    display_name: Option<&str>,
    device_name: &str,
) -> StoreResult<Option<(String, String)>> {
    let token = new_token();
    let user_id = store.create_client(coach_id, display_name, device_name, &hash_token(&token)).await?;
    Ok(user_id.map(|user_id| (user_id, token)))
}
