//! The gateway's own HTTP endpoints, beside ingest's: liveness and readiness, `/v1/health`
//! ([`health`]), `/metrics` ([`metrics`]), MDM snapshot pushes ([`mdm`]), endpoint lookups
//! ([`endpoints`]), `/v1/reload` ([`reload`]) and `/v1/tap` ([`tap`]). Admin endpoints check
//! the token or client certificate from the headers before reading any body.

mod endpoints;
mod health;
mod mdm;
mod metrics;
mod reload;
mod tap;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use prometheus::Registry;
use thoth_config::MdmProvider;
use thoth_enrich::{Enricher, LoaderCommand, MdmStatus};
use thoth_ingest::{ApiError, ClientIdentity, Scope, SharedAccess};
use thoth_sinks::{SinkHealth, SinkMetrics, Tap};
use thoth_wal::Wal;

use crate::gateway::reload::ReloadRequest;
use crate::supervisor::Supervisor;

pub use metrics::WalGauges;

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
    /// State shared with the other replicas.
    pub shared: thoth_state::SharedState,
}

/// The parts of the API's view that a config reload replaces.
#[derive(Default)]
pub struct Live {
    pub sinks: Vec<(String, Arc<SinkHealth>)>,
    pub providers: Vec<MdmProvider>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(health::ready))
        .route("/v1/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/mdm/{provider}", put(mdm::push_snapshot))
        .route(
            "/v1/endpoints/{tenant}/{endpoint}",
            get(endpoints::endpoint),
        )
        .route("/v1/reload", post(reload::reload))
        .route("/v1/tap", get(tap::tap))
        .with_state(state)
}

/// The client certificate's grant, when the connection presented a mapped one.
pub(crate) type Client = Option<axum::Extension<ClientIdentity>>;

/// Admin endpoints take an admin bearer token, or a client certificate mapped with
/// `admin = true` (a token, when sent, decides). Checked from the headers alone, before any
/// body is read.
pub(crate) fn require_admin(
    s: &ApiState,
    headers: &HeaderMap,
    client: &Client,
) -> Result<(), ApiError> {
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
