//! The destination module of each HTTP sink type.

use std::sync::Arc;

use thoth_config::{SinkConfig, SinkKind};
use thoth_sinks::{Destination, Elasticsearch, Sentinel, SplunkHec, Webhook};

/// The destination of an HTTP sink; `None` for the file and Kafka sinks.
pub fn build(sink: &SinkConfig) -> Result<Option<Arc<dyn Destination>>, String> {
    Ok(Some(match &sink.kind {
        SinkKind::File { .. } | SinkKind::Kafka(_) => return Ok(None),
        SinkKind::SplunkHec(c) => Arc::new(SplunkHec::new(c)?),
        SinkKind::Elasticsearch(c) => Arc::new(Elasticsearch::new(c)?),
        SinkKind::Sentinel(c) => Arc::new(Sentinel::new(c)),
        SinkKind::Webhook(c) => Arc::new(Webhook::new(c, sink.batch.max_events > 1)?),
    }))
}
