//! A cap on the `StreamEntries` one principal holds open on this instance, so that one
//! token cannot take every stream the server can carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::Principal;
use super::status::ApiError;
use crate::metrics::OPEN_STREAMS;

/// How long a refused caller waits before trying again (a stream of its own may close).
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct StreamSlots {
    per_principal: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream; dropping it (when the stream ends) frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    holder: String,
}

impl StreamSlots {
    pub fn new(per_principal: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { per_principal, open: Mutex::default() })
    }

    pub fn take(self: &Arc<Self>, principal: &Principal) -> Result<StreamSlot, ApiError> {
        let holder = principal.actor();
        let mut open = self.open.lock().expect("stream slots lock");
        let held = open.entry(holder.clone()).or_default();
        if *held >= self.per_principal {
            crate::metrics::refused("streams_per_token");
            let message = format!("{} streams are already open for this token; close one first", self.per_principal);
            return Err(ApiError::ResourceExhausted { message, retry: Some(RETRY) });
        }
        *held += 1;
        metrics::gauge!(OPEN_STREAMS).increment(1);
        Ok(StreamSlot { slots: self.clone(), holder })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS).decrement(1);
        let mut open = self.slots.open.lock().expect("stream slots lock");
        if let Some(held) = open.get_mut(&self.holder) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_holds_at_most_its_slots_and_a_closed_stream_frees_one() {
        let slots = StreamSlots::new(2);
        let coach = Principal::Coach { coach_id: "c1".into() };
        let other = Principal::Coach { coach_id: "c2".into() };
        let first = slots.take(&coach).unwrap();
        let _second = slots.take(&coach).unwrap();
        assert!(matches!(slots.take(&coach), Err(ApiError::ResourceExhausted { .. })));
        assert!(slots.take(&other).is_ok(), "another principal has slots of its own");
        drop(first);
        assert!(slots.take(&coach).is_ok());
    }
}
