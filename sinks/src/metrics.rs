//! Prometheus metrics shared by all sinks.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Counters and histograms of every sink, labelled by sink name.
#[derive(Clone)]
pub struct SinkMetrics {
    /// `thoth_sink_events_total{sink,outcome}`: delivered, filtered (not for this sink), retried.
    pub events: IntCounterVec,
    /// `thoth_sink_retries_total{sink}`: failed attempts that will be retried.
    pub retries: IntCounterVec,
    /// `thoth_event_delivery_seconds{sink}`: from WAL append to delivery.
    pub delivery_seconds: HistogramVec,
    /// `thoth_sink_requests_total{sink,status}`: requests by HTTP status (`error` when none).
    pub requests: IntCounterVec,
    /// `thoth_sink_dead_letters_total{sink,reason}`: `rejected`, `max_duration`, `encode`.
    pub dead_letters: IntCounterVec,
    /// `thoth_sink_queue_events{sink}`: accepted, not yet delivered (set at each scrape).
    pub queue_events: IntGaugeVec,
    /// `thoth_sink_request_seconds{sink}`.
    pub request_seconds: HistogramVec,
    /// `thoth_sink_batch_events{sink}`: events per request.
    pub batch_events: HistogramVec,
    /// `thoth_sink_concurrency_limit{sink}`: requests the sink may have in flight now
    /// (moves with `concurrency = "adaptive"`).
    pub concurrency_limit: IntGaugeVec,
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
        let requests = IntCounterVec::new(
            Opts::new(
                "thoth_sink_requests_total",
                "Requests sent by each sink, by HTTP status.",
            ),
            &["sink", "status"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "thoth_sink_dead_letters_total",
                "Events moved to a sink's dead-letter queue, by reason.",
            ),
            &["sink", "reason"],
        )?;
        let queue_events = IntGaugeVec::new(
            Opts::new(
                "thoth_sink_queue_events",
                "Events accepted but not yet delivered, per sink.",
            ),
            &["sink"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("thoth_sink_request_seconds", "Duration of sink requests.").buckets(
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            &["sink"],
        )?;
        let batch_events = HistogramVec::new(
            HistogramOpts::new("thoth_sink_batch_events", "Events per sink request.").buckets(
                vec![
                    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0,
                ],
            ),
            &["sink"],
        )?;
        let concurrency_limit = IntGaugeVec::new(
            Opts::new(
                "thoth_sink_concurrency_limit",
                "Requests an HTTP sink may have in flight now (adaptive or fixed).",
            ),
            &["sink"],
        )?;
        for m in [&events, &retries, &requests, &dead_letters] {
            registry.register(Box::new(m.clone()))?;
        }
        for g in [&queue_events, &concurrency_limit] {
            registry.register(Box::new(g.clone()))?;
        }
        for h in [&delivery_seconds, &request_seconds, &batch_events] {
            registry.register(Box::new(h.clone()))?;
        }
        Ok(SinkMetrics {
            events,
            retries,
            delivery_seconds,
            requests,
            dead_letters,
            queue_events,
            request_seconds,
            batch_events,
            concurrency_limit,
        })
    }
}

/// One sink's series of [`SinkMetrics`], resolved once when the sink is built (no label
/// lookups per batch).
#[derive(Clone)]
pub struct SinkCounters {
    pub delivered: prometheus::IntCounter,
    pub filtered: prometheus::IntCounter,
    pub retried: prometheus::IntCounter,
    pub dead_lettered: prometheus::IntCounter,
    pub retries: prometheus::IntCounter,
    pub delivery_seconds: prometheus::Histogram,
    pub request_seconds: prometheus::Histogram,
    pub batch_events: prometheus::Histogram,
    pub concurrency_limit: prometheus::IntGauge,
    sink: String,
    metrics: SinkMetrics,
}

impl SinkCounters {
    /// The series of sink `sink`.
    pub fn new(metrics: &SinkMetrics, sink: &str) -> Self {
        let events = |outcome: &str| metrics.events.with_label_values(&[sink, outcome]);
        SinkCounters {
            delivered: events("delivered"),
            filtered: events("filtered"),
            retried: events("retried"),
            dead_lettered: events("dead_lettered"),
            retries: metrics.retries.with_label_values(&[sink]),
            delivery_seconds: metrics.delivery_seconds.with_label_values(&[sink]),
            request_seconds: metrics.request_seconds.with_label_values(&[sink]),
            batch_events: metrics.batch_events.with_label_values(&[sink]),
            concurrency_limit: metrics.concurrency_limit.with_label_values(&[sink]),
            sink: sink.to_string(),
            metrics: metrics.clone(),
        }
    }

    /// Counts a request answered with `status` (`"error"` when there was no answer).
    pub fn request(&self, status: &str) {
        self.metrics
            .requests
            .with_label_values(&[&self.sink, status])
            .inc();
    }

    /// Counts `n` dead letters written for `reason` (`rejected`, `max_duration`, …).
    pub fn dead_letters(&self, reason: &str, n: u64) {
        self.metrics
            .dead_letters
            .with_label_values(&[&self.sink, reason])
            .inc_by(n);
        self.dead_lettered.inc_by(n);
    }
}
