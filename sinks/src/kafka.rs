//! `kafka`: produces enriched events (or their remap) to a topic, keyed by endpoint id, with
//! the delivery engine's semantics: a delivery report is delivery; retriable errors are retried
//! with backoff; a fatal error marks the sink failing and keeps the events in the WAL.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use thoth_config::{KafkaSinkConfig, RetryConfig, SinkConfig};
use thoth_event::{now_rfc3339, record, EnrichedView};
use thoth_wal::{Entry, Reader};
use tokio::sync::watch;

use crate::backoff::{wait_backoff, Jitter};
use crate::dlq::{DeadLetter, DeadLetterQueue};
use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;
use crate::route::{Route, Routed};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Kafka sink.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: FutureProducer,
    route: Route,
    dlq: DeadLetterQueue,
    reader: Reader,
    max_events: usize,
    max_bytes: usize,
    retry: RetryConfig,
    health: Arc<SinkHealth>,
    metrics: SinkMetrics,
}

struct Pending {
    key: Option<String>,
    payload: Vec<u8>,
    appended_ms: u64,
}

impl KafkaSink {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &SinkConfig,
        kafka: &KafkaSinkConfig,
        route: Route,
        dlq: DeadLetterQueue,
        reader: Reader,
        health: Arc<SinkHealth>,
        metrics: SinkMetrics,
    ) -> Result<KafkaSink, String> {
        let producer = producer(kafka).map_err(|e| format!("sinks.{}: {e}", config.name))?;
        Ok(KafkaSink {
            name: config.name.clone(),
            topic: kafka.topic.clone(),
            producer,
            route,
            dlq,
            reader,
            max_events: config.batch.max_events as usize,
            max_bytes: config.batch.max_bytes as usize,
            retry: config.retry,
            health,
            metrics,
        })
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut jitter = Jitter::new();
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = self.reader.wait() => {}
                _ = stop.changed() => continue,
            }
            let entries = match self.reader.read(self.max_events, self.max_bytes) {
                Ok(e) => e,
                Err(e) => {
                    self.health.failed(format!("cannot read the WAL: {e}"));
                    tokio::time::sleep(self.retry.initial_backoff).await;
                    continue;
                }
            };
            let Some(last) = entries.last() else { continue };
            let next_seq = last.seq + 1;
            let (pending, failed, filtered) = self.route_all(&entries);
            if !failed.is_empty() {
                let n = failed.len() as u64;
                if !self
                    .dlq
                    .append_until_stored(Arc::new(failed), &self.retry, &self.health, &mut stop)
                    .await
                {
                    break; // stopping: the batch stays in the WAL
                }
                self.metrics
                    .dead_letters
                    .with_label_values(&[&self.name, "remap"])
                    .inc_by(n);
            }
            self.metrics
                .events
                .with_label_values(&[&self.name, "filtered"])
                .inc_by(filtered);
            if !self.produce_all(pending, &mut jitter, &mut stop).await {
                break;
            }
            if let Err(e) = self.reader.commit(next_seq) {
                self.health
                    .failed(format!("cannot persist the cursor: {e}"));
            }
        }
        self.producer.flush(Duration::from_secs(5)).ok();
    }

    fn route_all(&self, entries: &[Entry]) -> (Vec<Pending>, Vec<DeadLetter>, u64) {
        let mut pending = Vec::new();
        let mut failed = Vec::new();
        let mut filtered = 0;
        for e in entries {
            let Some(rec) = record::decode(&e.data) else {
                filtered += 1;
                continue;
            };
            match self.route.route(rec.tenant_id, rec.json) {
                Routed::Skip => filtered += 1,
                Routed::Send(json) => pending.push(Pending {
                    key: EnrichedView::read(rec.json, rec.fields.as_ref())
                        .ok()
                        .and_then(|v| v.endpoint().map(str::to_string)),
                    payload: json.into_owned(),
                    appended_ms: e.appended_ms,
                }),
                Routed::Failed(reason) => failed.push(DeadLetter::new(
                    &self.name,
                    rec.tenant_id,
                    rec.json,
                    &reason,
                    1,
                    now_rfc3339(),
                )),
            }
        }
        (pending, failed, filtered)
    }

    /// Produces every event until each has a delivery report; `false` when stopped first.
    async fn produce_all(
        &self,
        mut pending: Vec<Pending>,
        jitter: &mut Jitter,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            let mut last_error = None;
            let mut fatal = false;
            let sends: Vec<_> = pending
                .iter()
                .map(|p| {
                    let mut record = FutureRecord::to(&self.topic).payload(&p.payload);
                    if let Some(k) = &p.key {
                        record = record.key(k);
                    }
                    self.producer.send(record, SEND_TIMEOUT)
                })
                .collect();
            let mut delivered = 0u64;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            for (p, send) in pending.iter().zip(sends) {
                match send.await {
                    Ok(_) => {
                        delivered += 1;
                        self.metrics
                            .delivery_seconds
                            .with_label_values(&[&self.name])
                            .observe(now_ms.saturating_sub(p.appended_ms) as f64 / 1000.0);
                    }
                    Err((e, _)) => {
                        fatal |= e.rdkafka_error_code().is_some_and(|c| {
                            matches!(
                                c,
                                rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                                    | rdkafka::types::RDKafkaErrorCode::ClusterAuthorizationFailed
                                    | rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                            )
                        });
                        last_error = Some(e.to_string());
                        retry.push(Pending {
                            key: p.key.clone(),
                            payload: p.payload.clone(),
                            appended_ms: p.appended_ms,
                        });
                    }
                }
            }
            self.metrics
                .events
                .with_label_values(&[&self.name, "delivered"])
                .inc_by(delivered);
            if retry.is_empty() {
                self.health.delivered();
                return true;
            }
            attempt += 1;
            let reason = last_error.unwrap_or_default();
            if fatal {
                self.health.failing(reason);
            } else {
                self.health.failed(reason);
            }
            self.metrics.retries.with_label_values(&[&self.name]).inc();
            if !wait_backoff(&self.retry, attempt, jitter.next_unit(), stop).await {
                return false;
            }
            pending = retry;
        }
        true
    }
}

/// The sink's producer. Creating one checks the librdkafka settings without connecting.
pub fn producer(kafka: &KafkaSinkConfig) -> Result<FutureProducer, String> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4");
    for (k, v) in &kafka.librdkafka {
        cc.set(k, v);
    }
    cc.create().map_err(|e| e.to_string())
}

/// Produces one event now, bypassing the WAL (for `verify`), and waits for the broker's
/// acknowledgement up to `timeout`.
pub async fn produce_one(
    kafka: &KafkaSinkConfig,
    key: &str,
    json: &[u8],
    timeout: Duration,
) -> crate::ProbeResult {
    let started = std::time::Instant::now();
    let done = |error: Option<String>| crate::ProbeResult {
        ok: error.is_none(),
        status: None,
        latency_ms: started.elapsed().as_millis() as u64,
        error,
    };
    let producer = match producer(kafka) {
        Ok(p) => p,
        Err(e) => return done(Some(e)),
    };
    let record = FutureRecord::to(&kafka.topic).key(key).payload(json);
    match producer.send(record, timeout).await {
        Ok(_) => done(None),
        Err((e, _)) => done(Some(format!("topic {}: {e}", kafka.topic))),
    }
}
