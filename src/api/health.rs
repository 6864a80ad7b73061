//! `/ready` and `/v1/health`: what the gateway, its sinks, MDM providers, check-ins, WAL and
//! background tasks are doing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use thoth_config::MdmSource;
use thoth_enrich::ProviderSummary;
use thoth_sinks::SinkStatus;
use time::OffsetDateTime;

use crate::supervisor::TaskReport;

use super::ApiState;

/// WAL use at which health reports `degraded`: sources will soon be told to back off.
const WAL_DEGRADED_FRACTION: f64 = 0.9;

pub(super) async fn ready(State(s): State<Arc<ApiState>>) -> Response {
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
pub(super) struct SinkReport {
    pub(super) status: SinkStatus,
    pub(super) queued_events: u64,
    pub(super) queued_bytes: u64,
    pub(super) oldest_age_s: f64,
    pub(super) last_error: Option<String>,
}

#[derive(Serialize)]
pub(super) struct MdmReport {
    pub(super) loaded: bool,
    pub(super) endpoints: usize,
    /// Per provider, by name: its snapshot and its last sync.
    #[serde(flatten)]
    pub(super) providers: BTreeMap<String, ProviderReport>,
}

#[derive(Serialize)]
pub(super) struct ProviderReport {
    pub(super) kind: &'static str,
    pub(super) tenant_id: String,
    pub(super) source: &'static str,
    pub(super) endpoints: usize,
    /// When the snapshot in use was taken (`null`: none yet).
    pub(super) snapshot: Option<String>,
    pub(super) last_success: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) last_counts: Option<thoth_enrich::SyncCounts>,
}

#[derive(Serialize)]
pub(super) struct CheckinReport {
    pub(super) healthy: u64,
    pub(super) stale: u64,
    pub(super) never: u64,
}

#[derive(Serialize)]
pub(super) struct WalReport {
    pub(super) bytes: u64,
    pub(super) max_bytes: u64,
}

#[derive(Serialize)]
pub(super) struct StateReport {
    pub(super) backend: &'static str,
    pub(super) ok: bool,
    pub(super) last_error: Option<String>,
}

#[derive(Serialize)]
pub(super) struct HealthReport {
    pub(super) status: &'static str,
    pub(super) sinks: BTreeMap<String, SinkReport>,
    pub(super) mdm: MdmReport,
    pub(super) checkins: CheckinReport,
    pub(super) wal: WalReport,
    /// The shared state (`[state]`): backend, whether it answers, its last error.
    pub(super) state: StateReport,
    /// Background tasks that restarted after a panic (none: `{}`).
    pub(super) tasks: BTreeMap<String, TaskReport>,
}

pub(super) fn health_report(s: &ApiState) -> HealthReport {
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
    let state = s.shared.status();
    let status = match worst {
        SinkStatus::Failing => "failing",
        SinkStatus::Degraded => "degraded",
        SinkStatus::Healthy
            if wal_full
                || mdm_failing
                || task_restarted
                || !state.ok
                || !s.enricher.is_loaded() =>
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
        state: StateReport {
            backend: state.backend,
            ok: state.ok,
            last_error: state.last_error,
        },
        tasks,
    }
}

pub(super) fn rank(s: SinkStatus) -> i64 {
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

pub(super) async fn health(State(s): State<Arc<ApiState>>) -> Json<HealthReport> {
    Json(health_report(&s))
}
