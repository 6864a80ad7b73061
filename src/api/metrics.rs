//! `/metrics`: the Prometheus registry, with the gauges computed at each scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use thoth_wal::Wal;

use super::health::{health_report, rank};
use super::ApiState;

/// Gauges computed at each scrape: the WAL's, and the health of sinks and MDM providers
/// (what the alert rules in `deploy/prometheus/alerts.yaml` watch).
pub struct WalGauges {
    sink_health: IntGaugeVec,
    sink_oldest_age: GaugeVec,
    mdm_last_success: GaugeVec,
    checkins: IntGaugeVec,
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
        let checkins = IntGaugeVec::new(
            Opts::new(
                "thoth_checkins_endpoints",
                "Endpoints by check-in health (healthy, stale, never), as /v1/health counts them.",
            ),
            &["status"],
        )?;
        registry.register(Box::new(checkins.clone()))?;
        registry.register(Box::new(sink_health.clone()))?;
        registry.register(Box::new(sink_oldest_age.clone()))?;
        registry.register(Box::new(mdm_last_success.clone()))?;
        Ok(WalGauges {
            sink_health,
            sink_oldest_age,
            mdm_last_success,
            checkins,
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

pub(super) async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
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
    let c = &report.checkins;
    for (status, n) in [
        ("healthy", c.healthy),
        ("stale", c.stale),
        ("never", c.never),
    ] {
        g.checkins.with_label_values(&[status]).set(n as i64);
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
