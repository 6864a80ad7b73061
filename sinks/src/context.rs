//! What every part of one running sink shares: its name, health, metrics series, dead-letter
//! queue, retry settings and the pause a struggling destination asked for.

use std::sync::Arc;

use thoth_config::RetryConfig;
use tokio::sync::watch;

use crate::dlq::{letters_for, DeadLetterQueue};
use crate::driver::Event;
use crate::health::SinkHealth;
use crate::metrics::{SinkCounters, SinkMetrics};
use crate::pause::Pause;

/// One sink's shared state.
pub struct SinkContext {
    pub name: String,
    pub health: Arc<SinkHealth>,
    pub counters: SinkCounters,
    pub dlq: DeadLetterQueue,
    pub retry: RetryConfig,
    /// Every batch of the sink waits while the destination asked it to (`Retry-After`, or
    /// the backoff after a failure).
    pub(crate) pause: Pause,
}

impl SinkContext {
    pub fn new(
        name: &str,
        health: Arc<SinkHealth>,
        metrics: &SinkMetrics,
        dlq: DeadLetterQueue,
        retry: RetryConfig,
    ) -> Arc<SinkContext> {
        Arc::new(SinkContext {
            name: name.to_string(),
            health,
            counters: SinkCounters::new(metrics, name),
            dlq,
            retry,
            pause: Pause::default(),
        })
    }

    /// Counts delivered events: health, the delivered counter and each one's delivery time.
    pub(crate) fn delivered<'a>(&self, events: impl ExactSizeIterator<Item = &'a Event>) {
        if events.len() == 0 {
            return;
        }
        self.health.delivered();
        self.counters.delivered.inc_by(events.len() as u64);
        let now = thoth_event::now_unix_ms();
        for event in events {
            if let Some(t) = event.appended_ms {
                self.counters
                    .delivery_seconds
                    .observe(now.saturating_sub(t) as f64 / 1000.0);
            }
        }
    }

    /// Writes dead letters of `events` (the enriched events, with their attempts) durably,
    /// retrying the write until it works; `false` when the sink stops first — the events
    /// then stay in the WAL. `class` is the metric's reason.
    pub(crate) async fn dead_letter<'a>(
        &self,
        events: impl Iterator<Item = &'a Event>,
        reason: &str,
        class: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let letters = letters_for(
            &self.name,
            reason,
            events.map(|e| {
                (
                    e.enriched().tenant_id.as_str(),
                    &e.enriched().json[..],
                    e.attempts.max(1),
                    e.first_failed_at.as_deref(),
                )
            }),
        );
        self.dlq
            .append_until_stored(
                letters,
                class,
                &self.retry,
                &self.health,
                &self.counters,
                stop,
            )
            .await
    }
}
