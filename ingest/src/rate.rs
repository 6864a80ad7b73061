//! Per-token ingest rate limits (`[[api.tokens]] max_events_per_second`): a token bucket
//! holding one second's worth of events, so one tenant flooding cannot starve the others.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket counted in events.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Events that may be taken now; negative after a batch larger than one second's worth.
    available: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_second: u64) -> RateLimiter {
        let per_second = per_second.max(1) as f64;
        RateLimiter {
            per_second,
            state: Mutex::new(Bucket {
                available: per_second,
                at: Instant::now(),
            }),
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
        let mut b = self.state.lock().unwrap();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.available = (b.available + elapsed * self.per_second).min(self.per_second);
        b.at = now;
        let need = (n as f64).min(self.per_second);
        if b.available >= need {
            b.available -= n as f64;
            Ok(())
        } else {
            let wait = (need - b.available) / self.per_second;
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
        let r = RateLimiter::new(100);
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
        let r = RateLimiter::new(100);
        let t0 = Instant::now();
        assert_eq!(r.take_at(350, t0), Ok(()));
        // 250 events of debt: the next small batch waits until the debt is paid.
        assert_eq!(r.take_at(10, t0 + Duration::from_secs(1)), Err(2));
        assert_eq!(r.take_at(10, t0 + Duration::from_secs(4)), Ok(()));
    }

    #[test]
    fn a_clock_that_does_not_move_or_goes_back_refills_nothing() {
        let r = RateLimiter::new(10);
        let t0 = Instant::now() + Duration::from_secs(5);
        assert_eq!(r.take_at(10, t0), Ok(()));
        // An earlier instant (as after a wall-clock jump; Instant itself is monotonic).
        assert_eq!(r.take_at(1, t0 - Duration::from_secs(3)), Err(1));
    }
}
