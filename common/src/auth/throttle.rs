//! Failed authentications, counted per client address. Every org key that is not already cached
//! costs a warehouse lookup (on BigQuery a query job: money and shared quota), so an address
//! presenting unknown keys may spend only a small budget of them: a token bucket of `burst`
//! attempts, refilled at `per_minute`. A lookup takes an attempt before it runs (so concurrent
//! requests cannot overspend) and gives it back when the key turns out valid; a failure keeps it.
//! An address with no attempt left is refused (429 with the seconds until one is back) before
//! anything is looked up. Valid credentials that cost nothing (the root key, a cached org key)
//! are not held back, so a client sharing an address with a key-guesser keeps working.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// The budget of failed authentications per client address (per process).
pub struct FailureThrottle {
    burst: f64,
    per_second: f64,
    buckets: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl FailureThrottle {
    /// `burst` attempts at once, refilled at `per_minute` (both at least 1).
    pub fn new(per_minute: u32, burst: u32) -> FailureThrottle {
        let burst = f64::from(burst.max(1));
        let per_second = f64::from(per_minute.max(1)) / 60.0;
        // A bucket idle long enough to be full again is the same as no bucket: forget it.
        let refill = Duration::from_secs_f64(burst / per_second);
        FailureThrottle {
            burst,
            per_second,
            buckets: Cache::builder().max_capacity(100_000).time_to_idle(refill).build(),
        }
    }

    fn bucket(&self, client: IpAddr) -> Arc<Mutex<Bucket>> {
        self.buckets.get_with(client, || Arc::new(Mutex::new(Bucket { tokens: self.burst, at: Instant::now() })))
    }

    /// Takes one attempt from `client`'s budget; `Err(seconds)` until one is back when none is left.
    pub fn take(&self, client: IpAddr) -> Result<(), u64> {
        let bucket = self.bucket(client);
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_second;
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// Gives back an attempt taken for a lookup that found a valid key.
    pub fn give_back(&self, client: IpAddr) {
        let bucket = self.bucket(client);
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        b.tokens = (b.tokens + 1.0).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_spends_its_burst_then_waits_for_the_refill() {
        let throttle = FailureThrottle::new(6, 3);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.take(a), Ok(()));
        }
        let wait = throttle.take(a).unwrap_err();
        assert!((1..=10).contains(&wait), "one attempt is back within 10 s at 6 a minute: {wait}");
        assert_eq!(throttle.take(b), Ok(()), "addresses are independent");
        throttle.give_back(a);
        assert_eq!(throttle.take(a), Ok(()), "a valid key's attempt is given back");
        assert!(throttle.take(a).is_err());
    }

    #[test]
    fn giving_back_never_exceeds_the_burst() {
        let throttle = FailureThrottle::new(60, 2);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        throttle.give_back(a);
        throttle.give_back(a);
        assert!(throttle.take(a).is_ok() && throttle.take(a).is_ok());
        assert!(throttle.take(a).is_err());
    }
}
