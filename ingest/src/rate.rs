//! Per-token ingest rate limits (`[[api.tokens]] max_events_per_second`): a token bucket
//! holding one second's worth of events, so one tenant flooding cannot starve the others.
//!
//! With shared state (`[state] backend = "redis"`) the bucket is fleet-wide, in the server;
//! while the server does not answer within its budget, each replica holds a local bucket of
//! `limit / state.expected_replicas`, so the fleet as a whole still holds about the limit.

use std::sync::Mutex;
use std::time::Instant;

use thoth_state::{RateAnswer, SharedState};

/// A token bucket counted in events.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    state: Mutex<Bucket>,
    /// The bucket's name in the shared state: never the token itself.
    key: String,
    /// The local bucket used while the shared state does not answer.
    fallback: Mutex<Option<(u64, Bucket)>>,
}

#[derive(Debug)]
struct Bucket {
    /// Events that may be taken now; negative after a batch larger than one second's worth.
    available: f64,
    at: Instant,
}

impl RateLimiter {
    /// A bucket of `per_second` events; `key` names it in the shared state (a digest of the
    /// credential, never the credential).
    pub fn new(per_second: u64, key: String) -> RateLimiter {
        let per_second = per_second.max(1) as f64;
        RateLimiter {
            per_second,
            state: Mutex::new(Bucket::full(per_second)),
            key,
            fallback: Mutex::new(None),
        }
    }

    /// Takes `n` events' worth from the fleet-wide bucket when there is shared state, else
    /// (or when it does not answer in time) from the local one.
    pub async fn take_shared(&self, n: usize, shared: &SharedState) -> Result<(), u64> {
        if shared.backend() == "local" {
            return self.take(n);
        }
        match shared.take_rate(&self.key, n, self.per_second()).await {
            Some(RateAnswer::Allowed) => Ok(()),
            Some(RateAnswer::Wait(s)) => Err(s),
            None => {
                shared.metrics().count("rate", "fallback");
                let share = (self.per_second() / shared.expected_replicas()).max(1);
                self.take_fallback(n, share, Instant::now())
            }
        }
    }

    fn take_fallback(&self, n: usize, share: u64, now: Instant) -> Result<(), u64> {
        let mut fallback = self.fallback.lock().unwrap();
        match &mut *fallback {
            Some((rate, bucket)) if *rate == share => bucket.take(n, share as f64, now),
            other => {
                let mut bucket = Bucket::full(share as f64);
                bucket.at = now;
                let taken = bucket.take(n, share as f64, now);
                *other = Some((share, bucket));
                taken
            }
        }
    }

    /// The configured rate.
    pub fn per_second(&self) -> u64 {
        self.per_second as u64
    }

    /// Takes `n` events' worth now, or says in how many whole seconds to retry. A batch larger
    /// than one second's worth passes when the bucket is full and leaves it in debt, so the
    /// long-run rate holds whatever the batch size.
    pub fn take(&self, n: usize) -> Result<(), u64> {
        self.take_at(n, Instant::now())
    }

    fn take_at(&self, n: usize, now: Instant) -> Result<(), u64> {
        self.state.lock().unwrap().take(n, self.per_second, now)
    }
}

impl Bucket {
    fn full(per_second: f64) -> Bucket {
        Bucket {
            available: per_second,
            at: Instant::now(),
        }
    }

    /// The bucket rule, shared by the configured and the fallback bucket.
    fn take(&mut self, n: usize, per_second: f64, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + elapsed * per_second).min(per_second);
        self.at = now;
        let need = (n as f64).min(per_second);
        if self.available >= need {
            self.available -= n as f64;
            Ok(())
        } else {
            let wait = (need - self.available) / per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_events_passes_then_the_rest_waits_for_the_refill() {
        let r = RateLimiter::new(100, "t".into());
        let t0 = Instant::now();
        assert_eq!(r.take_at(60, t0), Ok(()));
        assert_eq!(r.take_at(40, t0), Ok(()));
        assert_eq!(r.take_at(1, t0), Err(1));
        // Half a second refills half the bucket.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.take_at(50, t1), Ok(()));
        assert_eq!(r.take_at(10, t1), Err(1));
    }

    #[test]
    fn a_batch_larger_than_a_second_passes_on_a_full_bucket_and_leaves_a_debt() {
        let r = RateLimiter::new(100, "t".into());
        let t0 = Instant::now();
        assert_eq!(r.take_at(350, t0), Ok(()));
        // 250 events of debt: the next small batch waits until the debt is paid.
        assert_eq!(r.take_at(10, t0 + Duration::from_secs(1)), Err(2));
        assert_eq!(r.take_at(10, t0 + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn the_fallback_bucket_holds_a_share_of_the_limit() {
        let r = RateLimiter::new(100, "t".into());
        let t0 = Instant::now() + Duration::from_secs(1);
        // Three replicas: 33 events a second each.
        assert_eq!(r.take_fallback(33, 33, t0), Ok(()));
        assert_eq!(r.take_fallback(1, 33, t0), Err(1));
        // The configured bucket is untouched.
        assert_eq!(r.take_at(100, t0), Ok(()));
    }

    #[test]
    fn a_clock_that_does_not_move_or_goes_back_refills_nothing() {
        let r = RateLimiter::new(10, "t".into());
        let t0 = Instant::now() + Duration::from_secs(5);
        assert_eq!(r.take_at(10, t0), Ok(()));
        // An earlier instant (as after a wall-clock jump; Instant itself is monotonic).
        assert_eq!(r.take_at(1, t0 - Duration::from_secs(3)), Err(1));
    }
}
