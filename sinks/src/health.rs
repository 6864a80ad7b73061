//! Per-sink health, shared between the sink's task and `/v1/health`.

use std::sync::Mutex;

use serde::Serialize;

/// `status` of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkStatus {
    Healthy,
    /// Retrying after failures.
    Degraded,
    /// Failing repeatedly (or on an error that retrying alone will not fix).
    Failing,
}

/// Consecutive failures after which a retrying sink counts as failing.
pub const FAILING_AFTER: u32 = 5;

#[derive(Debug)]
struct State {
    status: SinkStatus,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// Append time (Unix ms) of the oldest event not yet delivered, while one is pending.
    oldest_pending_ms: Option<u64>,
}

/// The health of one sink.
#[derive(Debug)]
pub struct SinkHealth {
    state: Mutex<State>,
}

impl Default for SinkHealth {
    fn default() -> Self {
        SinkHealth {
            state: Mutex::new(State {
                status: SinkStatus::Healthy,
                consecutive_failures: 0,
                last_error: None,
                oldest_pending_ms: None,
            }),
        }
    }
}

/// A point-in-time view of a sink's health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub status: SinkStatus,
    pub last_error: Option<String>,
    pub oldest_pending_ms: Option<u64>,
}

impl SinkHealth {
    pub fn delivered(&self) {
        let mut s = self.state.lock().unwrap();
        s.status = SinkStatus::Healthy;
        s.consecutive_failures = 0;
        s.oldest_pending_ms = None;
    }

    /// A failed attempt; `error` must not contain secrets.
    pub fn failed(&self, error: String) {
        let mut s = self.state.lock().unwrap();
        s.consecutive_failures += 1;
        s.status = if s.consecutive_failures >= FAILING_AFTER {
            SinkStatus::Failing
        } else {
            SinkStatus::Degraded
        };
        s.last_error = Some(error);
    }

    /// An error retrying alone will not fix (a refused token): failing at once.
    pub fn failing(&self, error: String) {
        let mut s = self.state.lock().unwrap();
        s.consecutive_failures += 1;
        s.status = SinkStatus::Failing;
        s.last_error = Some(error);
    }

    pub fn pending_since(&self, appended_ms: u64) {
        let mut s = self.state.lock().unwrap();
        if s.oldest_pending_ms.is_none_or(|old| appended_ms < old) {
            s.oldest_pending_ms = Some(appended_ms);
        }
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.state.lock().unwrap();
        HealthSnapshot {
            status: s.status,
            last_error: s.last_error.clone(),
            oldest_pending_ms: s.oldest_pending_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrades_then_fails_then_recovers() {
        let h = SinkHealth::default();
        h.failed("disk full".into());
        assert_eq!(h.snapshot().status, SinkStatus::Degraded);
        for _ in 1..FAILING_AFTER {
            h.failed("disk full".into());
        }
        assert_eq!(h.snapshot().status, SinkStatus::Failing);
        h.delivered();
        let s = h.snapshot();
        assert_eq!(s.status, SinkStatus::Healthy);
        assert_eq!(
            s.last_error.as_deref(),
            Some("disk full"),
            "the last error stays visible"
        );
    }
}
