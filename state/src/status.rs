//! Whether the shared state answers, and what it counts.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// The backend's state as `/v1/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStatus {
    pub backend: &'static str,
    /// The last operation or health check succeeded.
    pub ok: bool,
    /// The last failure, never with the URL (it may hold a password).
    pub last_error: Option<String>,
}

/// `thoth_state_ops_total{op,outcome}` and `thoth_state_up`.
#[derive(Clone)]
pub struct StateMetrics {
    ops: IntCounterVec,
    up: IntGauge,
}

impl StateMetrics {
    /// The metrics, registered with `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<StateMetrics> {
        let m = StateMetrics::unregistered();
        registry.register(Box::new(m.ops.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        Ok(m)
    }

    /// The metrics, registered nowhere (tests, `backend = "local"` callers without a registry).
    pub fn unregistered() -> StateMetrics {
        StateMetrics {
            ops: IntCounterVec::new(
                Opts::new(
                    "thoth_state_ops_total",
                    "Shared-state operations by kind and outcome (ok, conflict, timeout, error, fallback).",
                ),
                &["op", "outcome"],
            )
            .expect("a valid metric"),
            up: IntGauge::new(
                "thoth_state_up",
                "1 while the shared state answers (always 1 with backend = \"local\").",
            )
            .expect("a valid metric"),
        }
    }

    /// Counts one operation.
    pub fn count(&self, op: &str, outcome: &str) {
        self.ops.with_label_values(&[op, outcome]).inc();
    }

    /// How many operations of `op` ended with `outcome`.
    pub fn get(&self, op: &str, outcome: &str) -> u64 {
        self.ops.with_label_values(&[op, outcome]).get()
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}

impl std::fmt::Debug for StateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMetrics")
    }
}
