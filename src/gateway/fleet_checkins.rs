//! Check-ins shared between replicas (`[state] backend = "redis"`): every second, the
//! check-ins received here are written to the shared state (newest wins per endpoint) and
//! those received anywhere since the last read are merged into this replica's tracker, so
//! `context.health`, `/v1/endpoints` and `/v1/health` see the fleet. While the server is
//! unreachable the check-ins wait in the outbox and stale alerting pauses (the sweeper asks
//! [`FleetView::current`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thoth_enrich::{unix_ms, Enricher};
use thoth_state::SharedState;
use time::OffsetDateTime;
use tokio::sync::watch;

/// How often check-ins are written and read.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How far back each read starts from the newest check-in already read: other replicas
/// write up to a sync interval (plus a slow round trip) after they receive.
const READ_SLACK_MS: i64 = 10_000;

/// Check-ins per read.
const PAGE: usize = 10_000;

/// When this replica last read the fleet's check-ins.
#[derive(Debug, Default)]
pub struct FleetView {
    read_at_ms: AtomicI64,
}

impl FleetView {
    /// Whether the fleet's check-ins were read recently enough to judge staleness by: a
    /// replica that cannot read them could alert an endpoint that checks in elsewhere.
    pub fn current(&self, now_ms: i64) -> bool {
        let at = self.read_at_ms.load(Ordering::Relaxed);
        at > 0 && now_ms - at <= 3 * SYNC_EVERY.as_millis() as i64
    }
}

/// Runs until `stop`.
pub async fn sync(
    enricher: Arc<Enricher>,
    shared: SharedState,
    view: Arc<FleetView>,
    mut stop: watch::Receiver<bool>,
) {
    let mut newest_read_ms = 0i64;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        if let Some(newest) = sync_once(&enricher, &shared, newest_read_ms).await {
            newest_read_ms = newest;
            view.read_at_ms
                .store(unix_ms(OffsetDateTime::now_utc()), Ordering::Relaxed);
        }
    }
    // What arrived since the last write, written once more.
    let out = enricher.checkins().outbox().take();
    shared.push_checkins(&out).await;
}

/// Writes the outbox, then reads what changed since `newest_read_ms - slack`: the newest
/// time read, or `None` when the server did not answer (the outbox keeps its check-ins).
async fn sync_once(enricher: &Enricher, shared: &SharedState, newest_read_ms: i64) -> Option<i64> {
    let tracker = enricher.checkins();
    let out = tracker.outbox().take();
    if !shared.push_checkins(&out).await {
        tracker.outbox().put_back(out);
        return None;
    }
    let since = if newest_read_ms == 0 {
        0
    } else {
        newest_read_ms - READ_SLACK_MS
    };
    let mut newest = newest_read_ms;
    let mut offset_pages = 0usize;
    loop {
        let rows = shared
            .pull_checkins_page(since, offset_pages * PAGE, PAGE)
            .await?;
        let index = enricher.index();
        for (tenant, endpoint, at_ms) in &rows {
            newest = newest.max(*at_ms);
            let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(*at_ms) * 1_000_000)
            else {
                continue;
            };
            let found = index.lookup(tenant, Some(endpoint), None, None);
            tracker.merge_fleet(tenant, endpoint, at, found.map(|(e, _)| e.mdm_device_id));
        }
        if rows.len() < PAGE {
            return Some(newest);
        }
        offset_pages += 1;
    }
}
