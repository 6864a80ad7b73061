//! Exponential backoff with full jitter.

use std::time::Duration;

/// The delay before retry number `attempt` (1-based): uniformly random ("full jitter") between
/// `initial` and the exponential ceiling `min(max, initial × 2^attempt)`, so retries spread out
/// and never come faster than `initial`. `unit` is a random number in `[0, 1)`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32 << attempt.min(30))
        .min(max)
        .max(initial);
    initial + (ceiling - initial).mul_f64(unit.clamp(0.0, 1.0))
}

/// A small, non-cryptographic random source for jitter (xorshift64*).
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
        Jitter(seed)
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let i = Duration::from_millis(500);
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, i, m, 0.0), i);
        assert_eq!(backoff(1, i, m, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, i, m, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(30, i, m, 1.0), m);
        assert_eq!(backoff(30, i, m, 0.0), i);
        assert_eq!(backoff(u32::MAX, i, m, 0.5), i + (m - i) / 2);
        // initial above max: never below initial
        assert_eq!(backoff(2, m, i, 0.7), m);
    }

    #[test]
    fn jitter_is_in_range() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let u = j.next_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
