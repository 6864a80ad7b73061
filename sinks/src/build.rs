//! A sink from its config: the one place that knows which delivery and destination each sink
//! type has.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thoth_config::{SinkConfig, SinkKind};
use thoth_wal::record::EnrichedRecord;
use thoth_wal::Reader;

use crate::context::SinkContext;
use crate::destination::Destination;
use crate::driver::{BatchPolicy, Delivery, ProbeResult, Sink};
use crate::file::FileDelivery;
use crate::health::SinkHealth;
use crate::http::HttpDelivery;
use crate::kafka::KafkaDelivery;
use crate::metrics::SinkMetrics;
use crate::route::Route;
use crate::{DeadLetterQueue, Elasticsearch, Sentinel, SinkError, SplunkHec, Webhook};

/// How long a probe may take to be acknowledged.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a run of one sink is built from besides its config.
pub struct SinkParts {
    pub route: Route,
    pub reader: Reader,
    pub health: Arc<SinkHealth>,
    pub metrics: SinkMetrics,
    pub dlq: DeadLetterQueue,
}

/// The sink of `config`, ready to run.
pub fn build(config: &SinkConfig, parts: SinkParts) -> Result<Sink, SinkError> {
    let ctx = SinkContext::new(
        &config.name,
        parts.health,
        &parts.metrics,
        parts.dlq,
        config.retry,
    );
    let delivery = delivery(config, ctx.clone())?;
    let batch = BatchPolicy {
        max_events: config.batch.max_events as usize,
        max_bytes: config.batch.max_bytes as usize,
        // The file and Kafka sinks write what is there; HTTP sinks fill their requests.
        timeout: match config.kind {
            SinkKind::File { .. } | SinkKind::Kafka(_) => Duration::ZERO,
            _ => config.batch.timeout,
        },
    };
    Ok(Sink::new(ctx, delivery, parts.route, parts.reader, batch))
}

/// Builds what the sink needs without running it (destination, HTTP client and TLS roots,
/// Kafka producer settings), so a config that would fail to start a sink is refused whole.
pub fn preflight(config: &SinkConfig) -> Result<(), SinkError> {
    delivery(config, detached_context(config)).map(drop)
}

/// Sends one enriched event to the sink now, bypassing the WAL, through the same path as
/// delivery (for `verify` and `test-webhook`): file sinks append the line, Kafka sinks produce
/// it, HTTP sinks send one request and wait for its acknowledgement, within [`PROBE_TIMEOUT`].
pub async fn probe(config: &SinkConfig, record: EnrichedRecord) -> ProbeResult {
    let delivery = match delivery(config, detached_context(config)) {
        Ok(d) => d,
        Err(e) => {
            return ProbeResult {
                ok: false,
                status: None,
                latency_ms: 0,
                error: Some(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, delivery.probe(record)).await {
        Ok(result) => result,
        Err(_) => ProbeResult {
            ok: false,
            status: None,
            latency_ms: PROBE_TIMEOUT.as_millis() as u64,
            error: Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        },
    }
}

/// The destination of an HTTP sink; `None` for the file and Kafka sinks.
pub fn destination(config: &SinkConfig) -> Result<Option<Arc<dyn Destination>>, SinkError> {
    Ok(Some(match &config.kind {
        SinkKind::File { .. } | SinkKind::Kafka(_) => return Ok(None),
        SinkKind::SplunkHec(c) => Arc::new(SplunkHec::new(c)?),
        SinkKind::Elasticsearch(c) => Arc::new(Elasticsearch::new(c)?),
        SinkKind::Sentinel(c) => Arc::new(Sentinel::new(c)),
        SinkKind::Webhook(c) => Arc::new(Webhook::new(c, config.batch.max_events > 1)?),
    }))
}

fn delivery(config: &SinkConfig, ctx: Arc<SinkContext>) -> Result<Arc<dyn Delivery>, SinkError> {
    Ok(match &config.kind {
        SinkKind::File { path } => Arc::new(FileDelivery::new(ctx, path.clone())),
        SinkKind::Kafka(kafka) => Arc::new(KafkaDelivery::new(ctx, kafka)?),
        _ => {
            let destination = destination(config)?.expect("an HTTP sink has a destination");
            Arc::new(HttpDelivery::new(ctx, destination, &config.http)?)
        }
    })
}

/// A context for a delivery that never runs under the driver (a probe, a preflight): its
/// metrics are registered nowhere and it writes no dead letters.
fn detached_context(config: &SinkConfig) -> Arc<SinkContext> {
    let metrics = SinkMetrics::new(&prometheus::Registry::new()).expect("fresh registry");
    SinkContext::new(
        &config.name,
        Arc::new(SinkHealth::default()),
        &metrics,
        DeadLetterQueue::new(Path::new("/nonexistent"), &config.name),
        config.retry,
    )
}
