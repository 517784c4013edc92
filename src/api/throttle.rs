//! Refuses a peer for a while after too many failed attempts (pairing-code guessing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peers remembered before expired ones are swept, so memory stays bounded.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct FailureThrottle {
    max_failures: u32,
    lockout: Duration,
    peers: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Failures older than `lockout` are forgotten.
    since: Instant,
    blocked_until: Option<Instant>,
}

impl FailureThrottle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        FailureThrottle { max_failures: max_failures.max(1), lockout, peers: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` while the peer is refused.
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let peers = self.peers.lock().expect("throttle lock");
        match peers.get(&peer).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut peers = self.peers.lock().expect("throttle lock");
        if peers.len() > SWEEP_ABOVE {
            peers.retain(|_, f| now.duration_since(f.since) < self.lockout || f.blocked_until.is_some_and(|u| u > now));
        }
        let failures = peers.entry(peer).or_insert(Failures { count: 0, since: now, blocked_until: None });
        if now.duration_since(failures.since) >= self.lockout {
            *failures = Failures { count: 0, since: now, blocked_until: None };
        }
        failures.count += 1;
        if failures.count >= self.max_failures {
            failures.blocked_until = Some(now + self.lockout);
        }
    }

    pub fn record_success(&self, peer: IpAddr) {
        self.peers.lock().expect("throttle lock").remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_after_the_configured_failures_and_others_are_not() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let guesser: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            throttle.record_failure(guesser);
            assert!(throttle.check(guesser).is_ok());
        }
        throttle.record_failure(guesser);
        let wait = throttle.check(guesser).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(throttle.check(other).is_ok());
    }

    #[test]
    fn a_success_forgets_earlier_failures() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        throttle.record_failure(peer);
        throttle.record_success(peer);
        throttle.record_failure(peer);
        assert!(throttle.check(peer).is_ok());
    }
}
