//! Check-ins waiting to be written to the shared state (`[state] backend = "redis"`): the
//! newest per endpoint, bounded, kept while the server is unreachable and written when it
//! returns.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// The most endpoints held while the shared state is unreachable; the check-ins of further
/// endpoints are counted and dropped from the outbox (they stay in this replica's state).
pub const MAX_OUTBOX: usize = 1_000_000;

/// (tenant, endpoint) → newest receive time, not yet written.
#[derive(Debug, Default)]
pub struct CheckinOutbox {
    enabled: std::sync::atomic::AtomicBool,
    pending: Mutex<HashMap<(String, String), OffsetDateTime>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl CheckinOutbox {
    /// Starts collecting check-ins (only with shared state: otherwise nothing reads them).
    pub fn enable(&self) {
        self.enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Notes a check-in received here.
    pub fn add(&self, tenant: &str, endpoint: &str, at: OffsetDateTime) {
        if !self.enabled.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        if let Some(t) = pending.get_mut(&(tenant.to_string(), endpoint.to_string())) {
            *t = (*t).max(at);
        } else if pending.len() < MAX_OUTBOX {
            pending.insert((tenant.to_string(), endpoint.to_string()), at);
        } else {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Everything pending, leaving the outbox empty: (tenant, endpoint, Unix ms).
    pub fn take(&self) -> Vec<(String, String, i64)> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        pending
            .into_iter()
            .map(|((t, e), at)| (t, e, unix_ms(at)))
            .collect()
    }

    /// Puts back what could not be written (a newer check-in that arrived meanwhile wins).
    pub fn put_back(&self, items: Vec<(String, String, i64)>) {
        for (t, e, ms) in items {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            self.add(&t, &e, at);
        }
    }

    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap().len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check-ins dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Unix milliseconds of a time.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_check_in_per_endpoint_waits_and_a_failed_write_is_put_back() {
        let o = CheckinOutbox::default();
        let t = |s| OffsetDateTime::from_unix_timestamp(s).unwrap();
        o.add("acme", "ep", t(10));
        assert!(o.is_empty(), "nothing is collected before enable()");
        o.enable();
        o.add("acme", "ep", t(10));
        o.add("acme", "ep", t(5));
        o.add("acme", "other", t(7));
        let mut taken = o.take();
        taken.sort();
        assert_eq!(
            taken,
            vec![
                ("acme".into(), "ep".into(), 10_000),
                ("acme".into(), "other".into(), 7_000)
            ]
        );
        assert!(o.is_empty());
        o.add("acme", "ep", t(20));
        o.put_back(taken);
        let mut again = o.take();
        again.sort();
        assert_eq!(
            again[0],
            ("acme".into(), "ep".into(), 20_000),
            "the newer one wins"
        );
        assert_eq!(again.len(), 2);
    }
}
