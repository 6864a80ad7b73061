//! The gateway's own endpoints: liveness, readiness, `/v1/health` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use serde::Serialize;
use thoth_enrich::{Enricher, ProviderSummary};
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

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(ready))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
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
    providers: Vec<ProviderSummary>,
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
    let status = match worst {
        SinkStatus::Failing => "failing",
        SinkStatus::Degraded => "degraded",
        SinkStatus::Healthy if wal_full || !s.enricher.is_loaded() => "degraded",
        SinkStatus::Healthy => "ok",
    };
    HealthReport {
        status,
        sinks,
        mdm: MdmReport {
            loaded: s.enricher.is_loaded(),
            endpoints,
            providers: index.providers.clone(),
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
