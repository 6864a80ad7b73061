//! Prometheus metrics shared by all sinks.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and histograms of every sink, labelled by sink name.
#[derive(Clone)]
pub struct SinkMetrics {
    /// `thoth_sink_events_total{sink,outcome}`: delivered, filtered (not for this sink), retried.
    pub events: IntCounterVec,
    /// `thoth_sink_retries_total{sink}`: failed attempts that will be retried.
    pub retries: IntCounterVec,
    /// `thoth_event_delivery_seconds{sink}`: from WAL append to delivery.
    pub delivery_seconds: HistogramVec,
}

impl SinkMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "thoth_sink_events_total",
                "Events handled by each sink, by outcome (delivered, filtered, retried, dead_lettered).",
            ),
            &["sink", "outcome"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "thoth_sink_retries_total",
                "Failed delivery attempts that are retried.",
            ),
            &["sink"],
        )?;
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "thoth_event_delivery_seconds",
                "Time from WAL append to delivery, per sink.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 3600.0,
            ]),
            &["sink"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        Ok(SinkMetrics {
            events,
            retries,
            delivery_seconds,
        })
    }
}
