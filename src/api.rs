//! The gateway's own endpoints: liveness, readiness, `/v1/health` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use serde::Serialize;
use thoth_config::{MdmProvider, MdmSource};
use thoth_enrich::{Enricher, MdmStatus, ProviderSummary};
use thoth_ingest::{ApiError, Scope, TokenTable};
use thoth_sinks::{SinkHealth, SinkMetrics, SinkStatus};
use thoth_wal::Wal;
use time::OffsetDateTime;

/// WAL use at which health reports `degraded`: sources will soon be told to back off.
const WAL_DEGRADED_FRACTION: f64 = 0.9;

/// State of the operational endpoints.
pub struct ApiState {
    pub registry: Registry,
    pub wal: Wal,
    pub enricher: Arc<Enricher>,
    pub sinks: Vec<(String, Arc<SinkHealth>)>,
    pub sink_metrics: SinkMetrics,
    /// For the admin endpoints.
    pub tokens: TokenTable,
    pub mdm_status: MdmStatus,
    /// Asks the MDM task to reload snapshots now; answered once the new index is in place.
    pub mdm_reload: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
    pub providers: Vec<MdmProvider>,
    pub shutting_down: Arc<AtomicBool>,
    pub wal_gauges: WalGauges,
}

/// WAL gauges, refreshed at each scrape.
pub struct WalGauges {
    bytes: IntGauge,
    max_bytes: IntGauge,
    appended: IntGauge,
    full_rejections: IntGauge,
    corrupt_regions: IntGauge,
}

impl WalGauges {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let g = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(WalGauges {
            bytes: g("thoth_wal_bytes", "Bytes held by the write-ahead log.")?,
            max_bytes: g(
                "thoth_wal_max_bytes",
                "wal.max_bytes: the size at which ingest answers 503.",
            )?,
            appended: g(
                "thoth_wal_appended_events",
                "Events appended to the WAL since start.",
            )?,
            full_rejections: g(
                "thoth_wal_full_rejections",
                "Appends refused because the WAL was full, since start.",
            )?,
            corrupt_regions: g(
                "thoth_wal_corrupt_regions",
                "Corrupt WAL regions found and skipped at start (data that may have been lost).",
            )?,
        })
    }

    fn refresh(&self, wal: &Wal) {
        let s = wal.stats();
        self.bytes.set(wal.total_bytes() as i64);
        self.max_bytes.set(wal.max_bytes() as i64);
        self.appended
            .set(s.appended_events.load(Ordering::Relaxed) as i64);
        self.full_rejections
            .set(s.full_rejections.load(Ordering::Relaxed) as i64);
        self.corrupt_regions
            .set(s.corrupt_regions.load(Ordering::Relaxed) as i64);
    }
}

/// The largest MDM snapshot `PUT /v1/mdm/{provider}` takes.
const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(ready))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/v1/mdm/{provider}",
            put(push_snapshot).layer(DefaultBodyLimit::max(MAX_SNAPSHOT_BYTES)),
        )
        .route("/v1/endpoints/{tenant}/{endpoint}", get(endpoint))
        .with_state(state)
}

fn require_admin(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match s
        .tokens
        .authorize(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
    {
        Ok(Scope::Admin) => Ok(()),
        Ok(Scope::Tenant(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_required",
            "this endpoint needs an admin token",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            e.message(),
        )),
    }
}

/// `PUT /v1/mdm/{provider}`: a snapshot in the provider's native format, validated, stored as
/// its current snapshot and in use when this answers.
async fn push_snapshot(
    State(s): State<Arc<ApiState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = require_admin(&s, &headers) {
        return e.into_response();
    }
    let Some(p) = s.providers.iter().find(|p| p.name == provider).cloned() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no [[mdm.providers]] named {provider:?}"),
        )
        .into_response();
    };
    if matches!(p.source, MdmSource::File) {
        return ApiError::new(
            StatusCode::CONFLICT,
            "file_provider",
            format!(
                "provider {provider:?} reads its snapshot from {}; update that file instead",
                p.file.display()
            ),
        )
        .into_response();
    }
    let stored = {
        let p = p.clone();
        tokio::task::spawn_blocking(move || thoth_enrich::store_snapshot(&p, &body)).await
    };
    match stored {
        Ok(Ok(counts)) => {
            s.mdm_status.success(&provider, counts.clone());
            let (ack, done) = tokio::sync::oneshot::channel();
            if s.mdm_reload.send(ack).await.is_ok() {
                let _ = done.await;
            }
            Json(serde_json::json!({
                "provider": provider, "kind": p.kind.as_str(),
                "imported": counts.imported, "upserted": counts.upserted,
                "unchanged": counts.unchanged, "removed": counts.removed, "errors": [],
            }))
            .into_response()
        }
        Ok(Err(e)) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_snapshot", e).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// `GET /v1/endpoints/{tenant}/{endpoint}`: the context and check-in health held for one
/// endpoint.
async fn endpoint(
    State(s): State<Arc<ApiState>>,
    Path((tenant, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers) {
        return e.into_response();
    }
    match s.enricher.describe(&tenant, &endpoint) {
        Some(v) => Json(v).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            format!("neither the MDM data nor any check-in knows endpoint {endpoint:?} of tenant {tenant:?}"),
        )
        .into_response(),
    }
}

async fn ready(State(s): State<Arc<ApiState>>) -> Response {
    if s.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !s.enricher.is_loaded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "MDM context not loaded yet\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

#[derive(Serialize)]
struct SinkReport {
    status: SinkStatus,
    queued_events: u64,
    queued_bytes: u64,
    oldest_age_s: f64,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct MdmReport {
    loaded: bool,
    endpoints: usize,
    /// Per provider, by name: its snapshot and its last sync.
    #[serde(flatten)]
    providers: BTreeMap<String, ProviderReport>,
}

#[derive(Serialize)]
struct ProviderReport {
    kind: &'static str,
    tenant_id: String,
    source: &'static str,
    endpoints: usize,
    /// When the snapshot in use was taken (`null`: none yet).
    snapshot: Option<String>,
    last_success: Option<String>,
    last_error: Option<String>,
    last_counts: Option<thoth_enrich::SyncCounts>,
}

#[derive(Serialize)]
struct CheckinReport {
    healthy: u64,
    stale: u64,
    never: u64,
}

#[derive(Serialize)]
struct WalReport {
    bytes: u64,
    max_bytes: u64,
}

#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    sinks: BTreeMap<String, SinkReport>,
    mdm: MdmReport,
    checkins: CheckinReport,
    wal: WalReport,
}

fn health_report(s: &ApiState) -> HealthReport {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
    let committed = s.wal.committed_seq();
    let mut sinks = BTreeMap::new();
    let mut worst = SinkStatus::Healthy;
    for (name, health) in &s.sinks {
        let h = health.snapshot();
        let cursor = s.wal.cursor(name).unwrap_or(committed);
        let queued_events = committed.saturating_sub(cursor);
        worst = worse(worst, h.status);
        sinks.insert(
            name.clone(),
            SinkReport {
                status: h.status,
                queued_events,
                queued_bytes: if queued_events > 0 {
                    s.wal.bytes_from(cursor)
                } else {
                    0
                },
                oldest_age_s: h
                    .oldest_pending_ms
                    .filter(|_| queued_events > 0)
                    .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0),
                last_error: h.last_error,
            },
        );
    }
    let index = s.enricher.index();
    let endpoints = index.len();
    let (healthy, stale) = s
        .enricher
        .checkins()
        .summary(OffsetDateTime::now_utc(), s.enricher.stale_after());
    let seen = s.enricher.checkins().mdm_endpoints_seen() as u64;
    let wal_full = s.wal.total_bytes() as f64 >= s.wal.max_bytes() as f64 * WAL_DEGRADED_FRACTION;
    let mdm_failing = s
        .providers
        .iter()
        .any(|p| s.mdm_status.get(&p.name).last_error.is_some());
    let status = match worst {
        SinkStatus::Failing => "failing",
        SinkStatus::Degraded => "degraded",
        SinkStatus::Healthy if wal_full || mdm_failing || !s.enricher.is_loaded() => "degraded",
        SinkStatus::Healthy => "ok",
    };
    HealthReport {
        status,
        sinks,
        mdm: MdmReport {
            loaded: s.enricher.is_loaded(),
            endpoints,
            providers: s
                .providers
                .iter()
                .map(|p| {
                    let loaded: Option<&ProviderSummary> =
                        index.providers.iter().find(|l| l.provider == p.name);
                    let status = s.mdm_status.get(&p.name);
                    (
                        p.name.clone(),
                        ProviderReport {
                            kind: p.kind.as_str(),
                            tenant_id: p.tenant_id.clone(),
                            source: match p.source {
                                MdmSource::File => "file",
                                MdmSource::Jamf(_) | MdmSource::Intune(_) => "api",
                                MdmSource::Push => "push",
                            },
                            endpoints: loaded.map_or(0, |l| l.endpoints),
                            snapshot: loaded.map(|l| l.snapshot.clone()),
                            last_success: status.last_success,
                            last_error: status.last_error,
                            last_counts: status.last_counts,
                        },
                    )
                })
                .collect(),
        },
        checkins: CheckinReport {
            healthy,
            stale,
            never: (endpoints as u64).saturating_sub(seen),
        },
        wal: WalReport {
            bytes: s.wal.total_bytes(),
            max_bytes: s.wal.max_bytes(),
        },
    }
}

fn worse(a: SinkStatus, b: SinkStatus) -> SinkStatus {
    let rank = |s| match s {
        SinkStatus::Healthy => 0,
        SinkStatus::Degraded => 1,
        SinkStatus::Failing => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

async fn health(State(s): State<Arc<ApiState>>) -> Json<HealthReport> {
    Json(health_report(&s))
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    s.wal_gauges.refresh(&s.wal);
    let committed = s.wal.committed_seq();
    for (name, _) in &s.sinks {
        let cursor = s.wal.cursor(name).unwrap_or(committed);
        s.sink_metrics
            .queue_events
            .with_label_values(&[name])
            .set(committed.saturating_sub(cursor) as i64);
    }
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&s.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_string())],
        buf,
    )
        .into_response()
}
