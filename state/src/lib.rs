//! What replicas share. Events never are (each replica has its own WAL and sinks, and
//! durability never depends on anything shared); the small state that makes several replicas
//! behave as one gateway is: check-ins (and who alerted which stale endpoint), webhook replay
//! ids and per-token rate limits.
//!
//! [`SharedState`] is that state's one door. With `backend = "local"` every operation answers
//! [`None`] at once and callers use their local state, exactly as a single gateway does. With
//! `backend = "redis"` each operation is one round trip to a Redis-compatible server within a
//! [`BUDGET`]; past it, or while the server is unreachable, the answer is [`None`] too and the
//! caller falls back to local state: ingest never waits on the server.

pub mod checkins;
mod rate;
mod redis_backend;
mod status;

use std::sync::Arc;
use std::time::Duration;

use thoth_config::StateConfig;

pub use checkins::FleetCheckin;
pub use rate::RateAnswer;
pub use status::{StateMetrics, StateStatus};

/// How long one operation may take before its caller falls back to local state.
pub const BUDGET: Duration = Duration::from_millis(50);

/// The state replicas share, or none (`backend = "local"`).
#[derive(Clone)]
pub struct SharedState {
    redis: Option<Arc<redis_backend::RedisBackend>>,
    expected_replicas: u64,
    metrics: StateMetrics,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("backend", &self.backend())
            .finish()
    }
}

impl SharedState {
    /// No shared state: every operation answers `None`.
    pub fn local() -> SharedState {
        SharedState {
            redis: None,
            expected_replicas: 1,
            metrics: StateMetrics::unregistered(),
        }
    }

    /// The state of `[state]`. A Redis backend connects in the background (and reconnects
    /// forever): an unreachable server never stops the gateway from starting. Call inside a
    /// tokio runtime.
    pub fn start(config: &StateConfig, metrics: StateMetrics) -> Result<SharedState, StateError> {
        match config {
            StateConfig::Local => Ok(SharedState {
                metrics,
                ..SharedState::local()
            }),
            StateConfig::Redis(r) => {
                let backend = redis_backend::RedisBackend::start(r, metrics.clone())?;
                Ok(SharedState {
                    redis: Some(Arc::new(backend)),
                    expected_replicas: r.expected_replicas.max(1),
                    metrics,
                })
            }
        }
    }

    /// Waits up to `within` for the backend to answer (at start, so the first requests use
    /// the shared state rather than the fallback); whether it does. Never fails the start:
    /// an unreachable server is the fallback's case.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.status().ok {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `local` or `redis`.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "local"
        }
    }

    /// Replicas that share the rate limits (`state.expected_replicas`).
    pub fn expected_replicas(&self) -> u64 {
        self.expected_replicas
    }

    /// Whether the backend answers now, and its last error (`/v1/health`).
    pub fn status(&self) -> StateStatus {
        match &self.redis {
            None => StateStatus {
                backend: "local",
                ok: true,
                last_error: None,
            },
            Some(r) => r.status(),
        }
    }

    /// Claims `key` (of kind `op`, e.g. `replay`) for `ttl`, atomically across replicas
    /// (`SET NX PX`): `Some(true)` when this call claimed it, `Some(false)` when it was
    /// claimed already, `None` when there is no shared state or it did not answer in time.
    pub async fn claim(&self, op: &'static str, key: &str, ttl: Duration) -> Option<bool> {
        self.redis.as_ref()?.claim(op, key, ttl).await
    }

    /// Gives a claim back (best effort: an unreachable server lets it expire).
    pub async fn release(&self, op: &'static str, key: &str) {
        if let Some(r) = &self.redis {
            r.release(op, key).await;
        }
    }

    /// Takes `n` events from the fleet-wide bucket `key` of `per_second` events per second:
    /// `None` when there is no shared state or it did not answer in time.
    pub async fn take_rate(&self, key: &str, n: usize, per_second: u64) -> Option<RateAnswer> {
        self.redis.as_ref()?.take_rate(key, n, per_second).await
    }

    /// Writes check-ins (newest wins per endpoint): whether the server took them all.
    pub async fn push_checkins(&self, checkins: &[FleetCheckin]) -> bool {
        match &self.redis {
            None => false,
            Some(r) => r.push_checkins(checkins).await,
        }
    }

    /// The check-ins received anywhere at or after `since_ms`, oldest first, `limit` of
    /// them from `offset`: `None` when there is no shared state or it did not answer.
    pub async fn pull_checkins_page(
        &self,
        since_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Option<Vec<FleetCheckin>> {
        self.redis
            .as_ref()?
            .pull_checkins(since_ms, offset, limit)
            .await
    }

    /// Extends a claim of this replica (`SET NX` by [`SharedState::claim`]) by `ttl`:
    /// `Some(false)` when another replica holds it now.
    pub async fn renew(&self, op: &'static str, key: &str, ttl: Duration) -> Option<bool> {
        self.redis.as_ref()?.renew(op, key, ttl).await
    }

    /// Stores an MDM provider's snapshot under its next version; the version.
    pub async fn publish_snapshot(&self, provider: &str, snapshot: Vec<u8>) -> Option<u64> {
        self.redis
            .as_ref()?
            .publish_snapshot(provider, snapshot)
            .await
    }

    /// The version of a provider's shared snapshot (0: none yet).
    pub async fn snapshot_version(&self, provider: &str) -> Option<u64> {
        self.redis.as_ref()?.snapshot_version(provider).await
    }

    /// A provider's shared snapshot and its version.
    pub async fn fetch_snapshot(&self, provider: &str) -> Option<(u64, Vec<u8>)> {
        self.redis.as_ref()?.fetch_snapshot(provider).await
    }

    /// The metrics handle (to count local fallbacks where callers decide them).
    pub fn metrics(&self) -> &StateMetrics {
        &self.metrics
    }
}

/// Why the shared state cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The URL is not one the client can use; the URL itself is never shown (it may hold a
    /// password).
    #[error("state.url: {0}")]
    Url(String),
}
