//! Ingest metrics.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct IngestMetrics {
    /// `thoth_events_received_total{source,type}`: events accepted (durable).
    pub received: IntCounterVec,
    /// `thoth_events_rejected_total{reason}`: events refused; a request whose events could not
    /// be counted (bad token, body too large, …) counts one.
    pub rejected: IntCounterVec,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let received = IntCounterVec::new(
            Opts::new(
                "thoth_events_received_total",
                "Events accepted (durably written to the WAL), by source and type.",
            ),
            &["source", "type"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "thoth_events_rejected_total",
                "Events refused, by reason (a request whose events could not be counted counts one).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(IngestMetrics { received, rejected })
    }
}
