//! Ingest yields to delivery: while a sink that is delivering (healthy) is behind the log by
//! more than [`BEHIND_EVENTS`], ingest decodes and writes one batch at a time
//! ([`thoth_ingest::BatchSlots::yield_to_delivery`]) until that sink is within
//! [`CAUGHT_UP_EVENTS`]. Clients feel it as slower answers — backpressure — long before the
//! WAL fills. A sink that is failing or retrying is not counted: its backlog is what the WAL
//! is for (a SIEM down for a day), and ingest keeps its full speed.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{IntGauge, Registry};
use thoth_ingest::BatchSlots;
use thoth_sinks::SinkStatus;
use thoth_wal::Wal;
use tokio::sync::watch;

use crate::api::Live;

/// A delivering sink this far behind makes ingest yield (about half a second of a busy
/// gateway: more than a sink holds in flight).
pub const BEHIND_EVENTS: u64 = 50_000;
/// Ingest takes its full speed back once every delivering sink is this close.
pub const CAUGHT_UP_EVENTS: u64 = 25_000;
/// How often the lags are looked at.
const EVERY: Duration = Duration::from_millis(100);

/// Whether ingest yields next, from whether it yields now and the largest lag of a sink
/// that is delivering (the gap between the two thresholds keeps it from flapping).
pub fn yields(yielding_now: bool, largest_delivering_lag: u64) -> bool {
    if yielding_now {
        largest_delivering_lag > CAUGHT_UP_EVENTS
    } else {
        largest_delivering_lag > BEHIND_EVENTS
    }
}

/// `thoth_ingest_yielding`: 1 while ingest yields to a delivering sink that is behind.
pub fn gauge(registry: &Registry) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(
        "thoth_ingest_yielding",
        "1 while ingest takes one batch at a time so that a delivering sink catches up.",
    )?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Looks at the sinks' lags every [`EVERY`] and narrows or widens the batch slots.
pub async fn watch_lags(
    wal: Wal,
    live: Arc<ArcSwap<Live>>,
    slots: BatchSlots,
    yielding: IntGauge,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let committed = wal.committed_seq();
        let largest = live
            .load()
            .sinks
            .iter()
            .filter(|(_, health)| health.snapshot().status == SinkStatus::Healthy)
            .map(|(name, _)| committed.saturating_sub(wal.cursor(name).unwrap_or(committed)))
            .max()
            .unwrap_or(0);
        let next = yields(slots.is_yielding(), largest);
        if next != slots.is_yielding() {
            tracing::debug!(lag = largest, yielding = next, "ingest yields to delivery");
        }
        slots.yield_to_delivery(next);
        yielding.set(i64::from(next));
    }
    slots.yield_to_delivery(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_yields_past_the_high_mark_and_resumes_below_the_low_one() {
        assert!(!yields(false, 0));
        assert!(!yields(false, BEHIND_EVENTS));
        assert!(yields(false, BEHIND_EVENTS + 1));
        assert!(yields(true, BEHIND_EVENTS));
        assert!(
            yields(true, CAUGHT_UP_EVENTS + 1),
            "no flapping between the marks"
        );
        assert!(!yields(true, CAUGHT_UP_EVENTS));
    }
}
