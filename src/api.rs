//! The gateway's own endpoints: liveness, readiness, `/v1/health` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use prometheus::{Encoder, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use serde::Serialize;
use thoth_config::{MdmProvider, MdmSource};
use thoth_enrich::{Enricher, LoaderCommand, MdmStatus, ProviderSummary};
use thoth_ingest::{ApiError, ClientIdentity, Scope, SharedAccess};
use thoth_sinks::{SinkHealth, SinkMetrics, SinkStatus, Tap, TapFilter};
use thoth_wal::Wal;
use time::OffsetDateTime;

use crate::reload::{ReloadError, ReloadRequest};
use crate::supervise::{Supervisor, TaskReport};

/// WAL use at which health reports `degraded`: sources will soon be told to back off.
const WAL_DEGRADED_FRACTION: f64 = 0.9;

/// State of the operational endpoints.
pub struct ApiState {
    pub registry: Registry,
    pub wal: Wal,
    pub enricher: Arc<Enricher>,
    pub sink_metrics: SinkMetrics,
    /// What a config reload replaces: the sinks and the MDM providers.
    pub live: Arc<ArcSwap<Live>>,
    /// Tokens (for the admin endpoints) and tenants; replaced by a config reload.
    pub access: SharedAccess,
    pub mdm_status: MdmStatus,
    /// Asks the MDM task to reload snapshots now; answered once the new index is in place.
    pub mdm_reload: tokio::sync::mpsc::Sender<LoaderCommand>,
    /// Asks the reloader to load the config file again.
    pub reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// Live inspection points (`/v1/tap`).
    pub tap: Tap,
    pub shutting_down: Arc<AtomicBool>,
    pub wal_gauges: WalGauges,
    /// `mdm.max_push_bytes`: the largest snapshot a push may send.
    pub max_push_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The background tasks, and which of them restarted after a panic.
    pub supervisor: Supervisor,
}

/// The parts of the API's view that a config reload replaces.
#[derive(Default)]
pub struct Live {
    pub sinks: Vec<(String, Arc<SinkHealth>)>,
    pub providers: Vec<MdmProvider>,
}

/// Gauges computed at each scrape: the WAL's, and the health of sinks and MDM providers
/// (what the alert rules in `deploy/prometheus/alerts.yaml` watch).
pub struct WalGauges {
    sink_health: IntGaugeVec,
    sink_oldest_age: GaugeVec,
    mdm_last_success: GaugeVec,
    bytes: IntGauge,
    max_bytes: IntGauge,
    appended: IntGauge,
    full_rejections: IntGauge,
    corrupt_regions: IntGauge,
    writer_panics: IntGauge,
}

impl WalGauges {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let g = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let sink_health = IntGaugeVec::new(
            Opts::new(
                "thoth_sink_health",
                "Sink health: 0 healthy, 1 degraded (retrying), 2 failing.",
            ),
            &["sink"],
        )?;
        let sink_oldest_age = GaugeVec::new(
            Opts::new(
                "thoth_sink_oldest_event_age_seconds",
                "Age of the oldest event queued for the sink (0 when caught up).",
            ),
            &["sink"],
        )?;
        let mdm_last_success = GaugeVec::new(
            Opts::new(
                "thoth_mdm_last_success_timestamp_seconds",
                "Unix time of the provider's last successful API sync or push.",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(sink_health.clone()))?;
        registry.register(Box::new(sink_oldest_age.clone()))?;
        registry.register(Box::new(mdm_last_success.clone()))?;
        Ok(WalGauges {
            sink_health,
            sink_oldest_age,
            mdm_last_success,
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
            writer_panics: g(
                "thoth_wal_writer_panics",
                "Groups of appends the WAL writer panicked on (refused; the writer goes on), since start.",
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
        self.writer_panics
            .set(s.writer_panics.load(Ordering::Relaxed) as i64);
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(ready))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/mdm/{provider}", put(push_snapshot))
        .route("/v1/endpoints/{tenant}/{endpoint}", get(endpoint))
        .route("/v1/reload", post(reload))
        .route("/v1/tap", get(tap))
        .with_state(state)
}

/// The client certificate's grant, when the connection presented a mapped one.
type Client = Option<axum::Extension<ClientIdentity>>;

/// Admin endpoints take an admin bearer token, or a client certificate mapped with
/// `admin = true` (a token, when sent, decides). Checked from the headers alone, before any
/// body is read.
fn require_admin(s: &ApiState, headers: &HeaderMap, client: &Client) -> Result<(), ApiError> {
    let certificate = client.as_ref().and_then(|axum::Extension(c)| c.0.as_ref());
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match s.access.load().tokens.identify(authorization, certificate) {
        Ok(grant) if grant.scope == Scope::Admin => Ok(()),
        Ok(_) => Err(ApiError::new(
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
/// its current snapshot and in use when this answers. The admin check and the provider lookup
/// come first; only then is the body read, streamed to a file beside the provider's snapshot
/// (at most `mdm.max_push_bytes`, within the body timeout) and parsed from there as a stream.
async fn push_snapshot(
    State(s): State<Arc<ApiState>>,
    Path(provider): Path<String>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let Some(p) = s
        .live
        .load()
        .providers
        .iter()
        .find(|p| p.name == provider)
        .cloned()
    else {
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
    let staged = match thoth_enrich::staging_path(&p) {
        Ok(path) => path,
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e).into_response()
        }
    };
    if let Err(e) = thoth_ingest::read_body_to_file(
        &headers,
        body,
        s.max_push_bytes,
        "mdm.max_push_bytes",
        s.body_timeout,
        &staged,
    )
    .await
    {
        return e.into_response();
    }
    let stored = {
        let p = p.clone();
        tokio::task::spawn_blocking(move || thoth_enrich::store_snapshot_file(&p, &staged)).await
    };
    match stored {
        Ok(Ok(counts)) => {
            s.mdm_status.success(&provider, counts.clone());
            let (ack, done) = tokio::sync::oneshot::channel();
            if s.mdm_reload.send(LoaderCommand::Refresh(ack)).await.is_ok() {
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
    client: Client,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
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
    /// Background tasks that restarted after a panic (none: `{}`).
    tasks: BTreeMap<String, TaskReport>,
}

fn health_report(s: &ApiState) -> HealthReport {
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
    let committed = s.wal.committed_seq();
    let mut sinks = BTreeMap::new();
    let mut worst = SinkStatus::Healthy;
    let live = s.live.load();
    for (name, health) in &live.sinks {
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
    let mdm_failing = live
        .providers
        .iter()
        .any(|p| s.mdm_status.get(&p.name).last_error.is_some());
    let tasks = s.supervisor.reports();
    let task_restarted = tasks.values().any(TaskReport::recent);
    let status = match worst {
        SinkStatus::Failing => "failing",
        SinkStatus::Degraded => "degraded",
        SinkStatus::Healthy
            if wal_full || mdm_failing || task_restarted || !s.enricher.is_loaded() =>
        {
            "degraded"
        }
        SinkStatus::Healthy => "ok",
    };
    HealthReport {
        status,
        sinks,
        mdm: MdmReport {
            loaded: s.enricher.is_loaded(),
            endpoints,
            providers: live
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
        tasks,
    }
}

fn rank(s: SinkStatus) -> i64 {
    match s {
        SinkStatus::Healthy => 0,
        SinkStatus::Degraded => 1,
        SinkStatus::Failing => 2,
    }
}

fn worse(a: SinkStatus, b: SinkStatus) -> SinkStatus {
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
    let report = health_report(&s);
    let g = &s.wal_gauges;
    g.sink_health.reset();
    g.sink_oldest_age.reset();
    for (name, sink) in &report.sinks {
        g.sink_health
            .with_label_values(&[name])
            .set(rank(sink.status));
        g.sink_oldest_age
            .with_label_values(&[name])
            .set(sink.oldest_age_s);
    }
    for (name, p) in &report.mdm.providers {
        let synced = p
            .last_success
            .as_deref()
            .and_then(|t| thoth_event::parse_rfc3339(t).ok());
        if let Some(t) = synced {
            g.mdm_last_success
                .with_label_values(&[name])
                .set(t.unix_timestamp() as f64);
        }
    }
    let committed = s.wal.committed_seq();
    for (name, _) in &s.live.load().sinks {
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

/// `POST /v1/reload` (admin): loads the config file again, like SIGHUP. `200` with what
/// changed; `400 invalid_config` with the same errors as `validate` (the running config stays);
/// `409` when there is no config file to reload.
async fn reload(State(s): State<Arc<ApiState>>, client: Client, headers: HeaderMap) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if s.reload.send(ReloadRequest { reply }).await.is_err() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down",
        )
        .into_response();
    }
    match answer.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(ReloadError::Invalid(errors))) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "invalid_config",
                "message": "the new config is invalid; the running config is unchanged",
                "details": errors.iter().map(|e| serde_json::json!({"path": e.path, "message": e.message})).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Ok(Err(ReloadError::NoConfigFile)) => ApiError::new(
            StatusCode::CONFLICT,
            "no_config_file",
            "the gateway runs the built-in default (no --config): there is no file to reload",
        )
        .into_response(),
        Ok(Err(ReloadError::Failed(message))) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "reload_failed", message).into_response()
        }
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the gateway is shutting down").into_response(),
    }
}

/// The query of `GET /v1/tap`.
#[derive(serde::Deserialize)]
struct TapQuery {
    /// `ingest`, `enriched` or `sink:NAME`.
    stage: Option<String>,
    tenant: Option<String>,
    /// Events per second at most (default 100, at most 1000).
    rate: Option<u32>,
}

/// How often an idle tap stream checks whether the gateway is shutting down.
const TAP_SHUTDOWN_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Events a tap shows per second unless asked otherwise.
const DEFAULT_TAP_RATE: u32 = 100;

/// `GET /v1/tap?stage=..&tenant=..&rate=..` (admin): a stream of NDJSON lines
/// `{"stage","tenant_id","event"}` until the client goes away. Sampled: at most `rate` events
/// per second, and a client that reads slowly misses events rather than slowing the pipeline.
async fn tap(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<TapQuery>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let stage = q.stage.unwrap_or_else(|| "enriched".to_string());
    let known = match stage.strip_prefix("sink:") {
        Some(name) => s.live.load().sinks.iter().any(|(n, _)| n == name),
        None => stage == "ingest" || stage == "enriched",
    };
    if !known {
        let sinks: Vec<String> = s
            .live
            .load()
            .sinks
            .iter()
            .map(|(n, _)| format!("sink:{n}"))
            .collect();
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_stage",
            format!(
                "stage {stage:?} is not one of ingest, enriched, {}",
                sinks.join(", ")
            ),
        )
        .into_response();
    }
    let subscription = s.tap.subscribe(TapFilter {
        stage,
        tenant: q.tenant,
        rate: q.rate.unwrap_or(DEFAULT_TAP_RATE),
    });
    // The stream ends when the gateway shuts down, so an open tap never holds up the drain.
    let closing = s.shutting_down.clone();
    let stream = futures_util::stream::unfold(subscription, move |mut sub| {
        let closing = closing.clone();
        async move {
            loop {
                if closing.load(Ordering::Acquire) {
                    return None;
                }
                match tokio::time::timeout(TAP_SHUTDOWN_CHECK, sub.lines.recv()).await {
                    Ok(Some(line)) => return Some((Ok::<_, std::convert::Infallible>(line), sub)),
                    Ok(None) => return None,
                    Err(_) => continue,
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
