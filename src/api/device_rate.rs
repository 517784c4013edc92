//! How fast one device may ingest: a token bucket of items per device, so that one phone
//! (or one stolen token) cannot take the writer every other client shares. Kept per
//! instance, in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Devices remembered before full buckets are swept, so memory stays bounded.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct DeviceRate {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    items: f64,
    at: Instant,
}

impl DeviceRate {
    /// `burst` items at once, refilled at `per_second` items a second.
    pub fn new(burst: u32, per_second: u32) -> DeviceRate {
        DeviceRate {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes `items` from the device's bucket, or `Err(wait)` until there will be enough
    /// (nothing is taken then). A request larger than the burst waits for a full bucket.
    pub fn take(&self, device_id: &str, items: usize) -> Result<(), Duration> {
        let now = Instant::now();
        let wanted = (items as f64).min(self.burst);
        let mut buckets = self.buckets.lock().expect("device rate lock");
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        }
        let bucket = buckets.entry(device_id.to_string()).or_insert(Bucket { items: self.burst, at: now });
        let available = self.refilled(bucket, now);
        if available < wanted {
            return Err(Duration::from_secs_f64((wanted - available) / self.per_second));
        }
        *bucket = Bucket { items: available - wanted, at: now };
        Ok(())
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        (bucket.items + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_spends_its_burst_then_waits_for_the_refill_and_others_are_untouched() {
        let rate = DeviceRate::new(100, 10);
        assert!(rate.take("phone", 60).is_ok());
        assert!(rate.take("phone", 40).is_ok());
        let wait = rate.take("phone", 20).unwrap_err();
        assert!(wait > Duration::from_millis(1_900) && wait <= Duration::from_secs(2), "{wait:?}");
        assert!(rate.take("other phone", 100).is_ok());
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let rate = DeviceRate::new(10, 1_000);
        assert!(rate.take("phone", 10).is_ok());
        assert!(rate.take("phone", 5).is_err());
        std::thread::sleep(Duration::from_millis(20));
        assert!(rate.take("phone", 5).is_ok(), "5 items refill in 5 ms");
    }
}
