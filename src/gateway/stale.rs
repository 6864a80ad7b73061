//! The check-in sweeper: emits one `endpoint_stale` alert into the pipeline for each endpoint
//! whose last check-in is older than `checkins.stale_after` (none again until it checks in),
//! and persists check-in state so a restart neither forgets endpoints nor re-alerts them.
//!
//! With shared state, exactly one replica emits each alert: it claims the endpoint and its
//! last check-in (`SET NX`) first, and a replica that finds the claim taken only notes the
//! alert as emitted. A newer check-in anywhere makes a new claim key, so the next staleness
//! alerts again. While the fleet's check-ins cannot be read, alerting pauses: a replica
//! that cannot see the fleet never raises a false alert.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use thoth_enrich::{unix_ms, Enricher};
use thoth_state::checkins::member;
use thoth_state::SharedState;

use super::fleet_checkins::FleetView;
use thoth_event::{format_rfc3339_millis, now_rfc3339, Event};
use thoth_ingest::Submit;
use time::OffsetDateTime;
use tokio::sync::watch;

/// How often to look: a quarter of `stale_after`, between 1 s and 1 min.
pub fn sweep_interval(stale_after: Duration) -> Duration {
    (stale_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The alert for a stale endpoint.
fn stale_alert(tenant: &str, endpoint: &str, last: OffsetDateTime, stale_after: Duration) -> Event {
    let last = format_rfc3339_millis(last);
    let body = json!({
        "type": "alert",
        "tenant_id": tenant,
        "endpoint_id": endpoint,
        "title": "endpoint_stale",
        "severity": "medium",
        "description": format!(
            "endpoint {endpoint} has not checked in since {last} (checkins.stale_after = {}s)",
            stale_after.as_secs()
        ),
        "last_checkin": last,
    });
    Event::parse(body.to_string().as_bytes(), &now_rfc3339()).expect("the alert is a valid event")
}

/// How long a stale alert's claim is kept: past it, a replica restored from an old state
/// file could alert the same staleness again.
const CLAIM_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shared state and how current this replica's view of the fleet's check-ins is.
pub type Fleet = Option<(SharedState, Arc<FleetView>)>;

/// Runs until `stop`; saves the state once more when stopping.
pub async fn sweep(
    enricher: Arc<Enricher>,
    submit: Arc<dyn Submit>,
    state_file: PathBuf,
    fleet: Fleet,
    mut stop: watch::Receiver<bool>,
) {
    let mut paused = false;
    let stale_after = enricher.stale_after();
    let mut tick = tokio::time::interval(sweep_interval(stale_after));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let tracker = enricher.checkins();
        if let Some((_, view)) = &fleet {
            let current = view.current(thoth_event::now_unix_ms() as i64);
            if current == paused {
                paused = !current;
                if paused {
                    tracing::warn!("stale alerting paused: the fleet's check-ins cannot be read from the shared state");
                } else {
                    tracing::info!("stale alerting resumed");
                }
            }
            if paused {
                continue;
            }
        }
        let index = enricher.index();
        let stale = tracker.newly_stale(OffsetDateTime::now_utc(), stale_after, |t, e| {
            index.lookup(t, Some(e), None, None).is_some()
        });
        drop(index);
        for (tenant, endpoint, last) in stale {
            if let Some((shared, _)) = &fleet {
                let key = format!("{}:{}", member(&tenant, &endpoint), unix_ms(last));
                match shared.claim("stale", &key, CLAIM_TTL).await {
                    Some(true) => {}
                    Some(false) => {
                        // Another replica emitted it.
                        tracker.mark_alerted(&tenant, &endpoint);
                        continue;
                    }
                    None => break, // unreachable now: the next sweep tries again
                }
            }
            let alert = stale_alert(&tenant, &endpoint, last, stale_after);
            // Emit first, then remember: a crash in between alerts twice rather than never.
            match submit.submit(vec![alert]).await {
                Ok(_) => {
                    tracing::info!(tenant_id = %tenant, endpoint_id = %endpoint, "endpoint stale: alert emitted");
                    tracker.mark_alerted(&tenant, &endpoint);
                }
                Err(e) => {
                    tracing::warn!(tenant_id = %tenant, endpoint_id = %endpoint, error = ?e, "cannot emit the stale alert now; will retry");
                    break;
                }
            }
        }
        if let Err(e) = tracker.save_if_changed(&state_file) {
            tracing::error!(path = %state_file.display(), error = %e, "cannot save check-in state");
        }
    }
    if let Err(e) = enricher.checkins().save_if_changed(&state_file) {
        tracing::error!(path = %state_file.display(), error = %e, "cannot save check-in state");
    }
}
