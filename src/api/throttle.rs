//! Refuses a peer for a while after too many failed attempts (pairing-code guessing).
//!
//! An attempt counts as a failure from the moment it starts, before it reaches the database,
//! so a thousand concurrent guesses from one peer cannot all get through before the first
//! is recorded; an attempt that succeeds takes back its own count and nothing more, so
//! redeeming a code of one's own does not wipe out earlier failed guesses.

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
    peers: Mutex<HashMap<PeerKey, Failures>>,
}

/// Who a count belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's prefix, which
/// holds more addresses than anyone could try).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerKey(IpAddr);

impl From<IpAddr> for PeerKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    PeerKey(IpAddr::V6(prefix.into()))
                }
            },
            v4 => PeerKey(v4),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Attempts that failed or are still running.
    count: u32,
    /// Failures older than `lockout` are forgotten.
    since: Instant,
    blocked_until: Option<Instant>,
}

/// One admitted attempt: a failure unless it is refunded.
#[must_use = "an attempt is a failure unless it is refunded"]
pub struct Attempt<'a> {
    throttle: &'a FailureThrottle,
    key: PeerKey,
    since: Instant,
}

impl FailureThrottle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        FailureThrottle { max_failures: max_failures.max(1), lockout, peers: Mutex::new(HashMap::new()) }
    }

    /// Admits an attempt of `peer`, counted as a failure until it succeeds, or `Err(wait)`
    /// while the peer is refused.
    pub fn begin(&self, peer: IpAddr) -> Result<Attempt<'_>, Duration> {
        let (now, key) = (Instant::now(), PeerKey::from(peer));
        let mut peers = self.peers.lock().expect("throttle lock");
        if peers.len() > SWEEP_ABOVE {
            peers.retain(|_, f| !self.expired(f, now));
        }
        let failures = peers.entry(key).or_insert(Failures { count: 0, since: now, blocked_until: None });
        if let Some(until) = failures.blocked_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        if self.expired(failures, now) {
            *failures = Failures { count: 0, since: now, blocked_until: None };
        }
        failures.count += 1;
        if failures.count >= self.max_failures {
            failures.blocked_until = Some(now + self.lockout);
        }
        Ok(Attempt { throttle: self, key, since: failures.since })
    }

    fn expired(&self, failures: &Failures, now: Instant) -> bool {
        now.duration_since(failures.since) >= self.lockout && failures.blocked_until.is_none_or(|until| until <= now)
    }
}

impl Attempt<'_> {
    /// Takes back this attempt's count (and the refusal it alone caused): it succeeded, or
    /// it never got an answer.
    pub fn refund(self) {
        let mut peers = self.throttle.peers.lock().expect("throttle lock");
        // A count restarted since this attempt began no longer holds it.
        if let Some(failures) = peers.get_mut(&self.key).filter(|f| f.since == self.since) {
            failures.count = failures.count.saturating_sub(1);
            if failures.count < self.throttle.max_failures {
                failures.blocked_until = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(throttle: &FailureThrottle, peer: IpAddr) {
        drop(throttle.begin(peer).expect("admitted"));
    }

    #[test]
    fn a_peer_is_refused_after_the_configured_failures_and_others_are_not() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let guesser: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            fail(&throttle, guesser);
        }
        let wait = throttle.begin(guesser).err().expect("refused");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(throttle.begin(other).is_ok());
    }

    #[test]
    fn attempts_still_running_count_so_concurrent_guesses_stop_at_the_limit() {
        let throttle = FailureThrottle::new(5, Duration::from_secs(60));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let running: Vec<_> = (0..1_000).filter_map(|_| throttle.begin(peer).ok()).collect();
        assert_eq!(running.len(), 5);
    }

    #[test]
    fn a_success_takes_back_only_its_own_attempt() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        fail(&throttle, peer);
        fail(&throttle, peer);
        throttle.begin(peer).expect("admitted").refund();
        fail(&throttle, peer);
        assert!(throttle.begin(peer).is_err(), "the two failures before the success still count");
    }

    #[test]
    fn an_ipv6_peer_is_counted_by_its_slash_64() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        fail(&throttle, "2001:db8:1:2::1".parse().unwrap());
        fail(&throttle, "2001:db8:1:2::ffff".parse().unwrap());
        assert!(throttle.begin("2001:db8:1:2:aaaa::9".parse().unwrap()).is_err());
        assert!(throttle.begin("2001:db8:1:3::1".parse().unwrap()).is_ok());
        assert_eq!(PeerKey::from("::ffff:10.0.0.1".parse::<IpAddr>().unwrap()), PeerKey("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn failures_are_forgotten_after_the_lockout() {
        let throttle = FailureThrottle::new(2, Duration::from_millis(50));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        fail(&throttle, peer);
        fail(&throttle, peer);
        assert!(throttle.begin(peer).is_err());
        std::thread::sleep(Duration::from_millis(60));
        fail(&throttle, peer);
        assert!(throttle.begin(peer).is_ok(), "a fresh count after the lockout");
    }
}
