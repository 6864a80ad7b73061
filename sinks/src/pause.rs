//! A sink-wide pause: after a `Retry-After` (or HEC busy) no request of that sink, in any
//! in-flight slot, goes out before the pause ends.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Pause {
    until: Mutex<Option<Instant>>,
}

impl Pause {
    /// Pauses for `d` from now (never shortens a longer pause).
    pub fn extend(&self, d: Duration) {
        // Saturating: a pause past what an Instant can hold is as good as a year.
        let now = Instant::now();
        let until = now
            .checked_add(d)
            .unwrap_or(now + Duration::from_secs(365 * 86_400));
        let mut u = self.until.lock().unwrap();
        if u.is_none_or(|old| until > old) {
            *u = Some(until);
        }
    }

    /// Waits until no pause is in force.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().unwrap();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }
}
