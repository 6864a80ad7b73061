//! The Redis-compatible backend: one connection manager (it reconnects by itself), every
//! operation within [`BUDGET`], a background check that keeps `ok` and `thoth_state_up`
//! true to the server within a second of a change.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thoth_config::RedisState;

use crate::{
    checkins, rate, FleetCheckin, RateAnswer, StateError, StateMetrics, StateStatus, BUDGET,
};

/// How often the background check pings the server.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct RedisBackend {
    prefix: String,
    replica_id: String,
    conn: Arc<RwLock<Option<ConnectionManager>>>,
    health: Arc<Mutex<Health>>,
    metrics: StateMetrics,
    gcra: redis::Script,
}

#[derive(Default)]
struct Health {
    ok: bool,
    last_error: Option<String>,
}

impl RedisBackend {
    pub(crate) fn start(config: &RedisState, metrics: StateMetrics) -> Result<Self, StateError> {
        let client =
            redis::Client::open(config.url.expose()).map_err(|e| StateError::Url(describe(&e)))?;
        let backend = RedisBackend {
            prefix: config.key_prefix.clone(),
            replica_id: config.replica_id.clone(),
            conn: Arc::default(),
            health: Arc::new(Mutex::new(Health {
                ok: false,
                last_error: Some("not connected yet".into()),
            })),
            metrics,
            gcra: redis::Script::new(rate::GCRA),
        };
        backend.metrics.set_up(false);
        tokio::spawn(check_forever(
            client,
            backend.conn.clone(),
            backend.health.clone(),
            backend.metrics.clone(),
        ));
        Ok(backend)
    }

    pub(crate) fn status(&self) -> StateStatus {
        let h = self.health.lock().unwrap();
        StateStatus {
            backend: "redis",
            ok: h.ok,
            last_error: h.last_error.clone(),
        }
    }

    fn key(&self, op: &str, key: &str) -> String {
        format!("{}{op}:{key}", self.prefix)
    }

    /// Runs one command within the budget; `None` (counted, and `ok` cleared) on failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: impl FnOnce(ConnectionManager) -> redis::RedisFuture<'static, T>,
    ) -> Option<T> {
        self.run_within(op, BUDGET, cmd).await
    }

    /// [`RedisBackend::run`] with a budget of its own (background work, never a request).
    async fn run_within<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        budget: Duration,
        cmd: impl FnOnce(ConnectionManager) -> redis::RedisFuture<'static, T>,
    ) -> Option<T> {
        let Some(conn) = self.conn.read().unwrap().clone() else {
            self.metrics.count(op, "unavailable");
            return None;
        };
        match tokio::time::timeout(budget, cmd(conn)).await {
            Ok(Ok(v)) => {
                self.metrics.count(op, "ok");
                Some(v)
            }
            Ok(Err(e)) => {
                self.metrics.count(op, "error");
                failed(&self.health, &self.metrics, describe(&e));
                None
            }
            Err(_) => {
                self.metrics.count(op, "timeout");
                failed(
                    &self.health,
                    &self.metrics,
                    format!("{op}: no answer within {} ms", budget.as_millis()),
                );
                None
            }
        }
    }

    pub(crate) async fn claim(&self, op: &'static str, key: &str, ttl: Duration) -> Option<bool> {
        let key = self.key(op, key);
        let who = self.replica_id.clone();
        let ttl_ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let reply: Option<Option<String>> = self
            .run(op, move |mut c| {
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&who)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut c)
                        .await
                })
            })
            .await;
        let claimed = reply?.is_some();
        if !claimed {
            self.metrics.count(op, "conflict");
        }
        Some(claimed)
    }

    pub(crate) async fn release(&self, op: &'static str, key: &str) {
        let key = self.key(op, key);
        let _: Option<u64> = self
            .run("release", move |mut c| {
                Box::pin(async move { redis::cmd("DEL").arg(&key).query_async(&mut c).await })
            })
            .await;
    }

    pub(crate) async fn take_rate(
        &self,
        key: &str,
        n: usize,
        per_second: u64,
    ) -> Option<RateAnswer> {
        let key = self.key("rate", key);
        let script = self.gcra.clone();
        let reply: u64 = self
            .run("rate", move |mut c| {
                Box::pin(async move {
                    script
                        .key(&key)
                        .arg(per_second.max(1))
                        .arg(n as u64)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await?;
        Some(rate::answer(reply))
    }
}

impl RedisBackend {
    pub(crate) async fn push_checkins(&self, checkins: &[FleetCheckin]) -> bool {
        if checkins.is_empty() {
            return true;
        }
        let key = self.key("checkins", "last");
        // One ZADD per chunk, all chunks pipelined: one round trip.
        let mut pipe = redis::pipe();
        for chunk in checkins.chunks(PUSH_CHUNK) {
            let cmd = pipe.cmd("ZADD").arg(&key).arg("GT");
            for (tenant, endpoint, at_ms) in chunk {
                cmd.arg(*at_ms).arg(checkins::member(tenant, endpoint));
            }
            cmd.ignore();
        }
        // Bounded however many endpoint ids clients make up: the oldest check-ins go first.
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(MAX_SHARED_CHECKINS + 1))
            .ignore();
        let done: Option<()> = self
            .run_within("checkins_push", BACKGROUND_BUDGET, move |mut c| {
                Box::pin(async move { pipe.query_async(&mut c).await })
            })
            .await;
        done.is_some()
    }

    pub(crate) async fn pull_checkins(
        &self,
        since_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Option<Vec<FleetCheckin>> {
        let key = self.key("checkins", "last");
        let rows: Vec<(String, i64)> = self
            .run_within("checkins_pull", BACKGROUND_BUDGET, move |mut c| {
                Box::pin(async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(since_ms)
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(limit)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        Some(
            rows.into_iter()
                .filter_map(|(m, at)| {
                    let (t, e) = checkins::parse_member(&m)?;
                    Some((t.to_string(), e.to_string(), at))
                })
                .collect(),
        )
    }
}

/// The most endpoints whose check-ins the shared state holds (each replica bounds its own
/// further, `checkins.max_unknown_endpoints`).
pub const MAX_SHARED_CHECKINS: i64 = 2_000_000;

/// Extends a claim only while this replica holds it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Stores a snapshot under the next version: `KEYS[1]` the provider's hash, `ARGV[1]` the
/// snapshot, `ARGV[2]` who wrote it.
const PUBLISH: &str = r#"
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'by', ARGV[2])
return v
"#;

/// The budget of moving a whole MDM snapshot (tens of MB for 100 000 endpoints).
const SNAPSHOT_BUDGET: Duration = Duration::from_secs(30);

impl RedisBackend {
    pub(crate) async fn renew(&self, op: &'static str, key: &str, ttl: Duration) -> Option<bool> {
        let key = self.key(op, key);
        let who = self.replica_id.clone();
        let ttl_ms = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let script = redis::Script::new(RENEW);
        let renewed: u64 = self
            .run(op, move |mut c| {
                Box::pin(async move {
                    script
                        .key(&key)
                        .arg(&who)
                        .arg(ttl_ms)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await?;
        Some(renewed == 1)
    }

    pub(crate) async fn publish_snapshot(&self, provider: &str, snapshot: Vec<u8>) -> Option<u64> {
        let key = self.key("mdm", provider);
        let who = self.replica_id.clone();
        let script = redis::Script::new(PUBLISH);
        self.run_within("mdm_publish", SNAPSHOT_BUDGET, move |mut c| {
            Box::pin(async move {
                script
                    .key(&key)
                    .arg(snapshot)
                    .arg(&who)
                    .invoke_async(&mut c)
                    .await
            })
        })
        .await
    }

    pub(crate) async fn snapshot_version(&self, provider: &str) -> Option<u64> {
        let key = self.key("mdm", provider);
        let v: Option<u64> = self
            .run_within("mdm_version", BACKGROUND_BUDGET, move |mut c| {
                Box::pin(async move {
                    redis::cmd("HGET")
                        .arg(&key)
                        .arg("version")
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        Some(v.unwrap_or(0))
    }

    pub(crate) async fn fetch_snapshot(&self, provider: &str) -> Option<(u64, Vec<u8>)> {
        let key = self.key("mdm", provider);
        let (v, data): (Option<u64>, Option<Vec<u8>>) = self
            .run_within("mdm_fetch", SNAPSHOT_BUDGET, move |mut c| {
                Box::pin(async move {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("version")
                        .arg("data")
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        Some((v.unwrap_or(0), data.unwrap_or_default()))
    }
}

/// Check-ins per `ZADD` of a push.
const PUSH_CHUNK: usize = 1000;

/// The budget of background operations (check-in push and pull): they never hold a request.
const BACKGROUND_BUDGET: Duration = Duration::from_secs(2);

/// Connects (retrying forever), then pings every [`CHECK_EVERY`]: `ok` follows the server.
async fn check_forever(
    client: redis::Client,
    conn: Arc<RwLock<Option<ConnectionManager>>>,
    health: Arc<Mutex<Health>>,
    metrics: StateMetrics,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(1)
        .set_max_delay(1000);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = conn.read().unwrap().clone();
        let mut manager = match current {
            Some(m) => m,
            None => {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(m) => {
                        *conn.write().unwrap() = Some(m.clone());
                        m
                    }
                    Err(e) => {
                        failed(&health, &metrics, describe(&e));
                        continue;
                    }
                }
            }
        };
        let ping: redis::RedisResult<String> =
            match tokio::time::timeout(CHECK_EVERY, redis::cmd("PING").query_async(&mut manager))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "no answer to PING within 1 s",
                ))),
            };
        match ping {
            Ok(_) => {
                let mut h = health.lock().unwrap();
                if !h.ok {
                    tracing::info!("shared state reachable");
                }
                h.ok = true;
                metrics.set_up(true);
            }
            Err(e) => failed(&health, &metrics, describe(&e)),
        }
    }
}

fn failed(health: &Mutex<Health>, metrics: &StateMetrics, error: String) {
    let mut h = health.lock().unwrap();
    if h.ok {
        tracing::warn!(error = %error, "shared state unreachable: falling back to local state");
    }
    h.ok = false;
    h.last_error = Some(error);
    metrics.set_up(false);
}

/// A client error in words, without the URL (it may hold a password).
fn describe(e: &redis::RedisError) -> String {
    format!("redis: {e}")
}
