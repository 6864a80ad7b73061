//! `kafka`: produces enriched events (or their remap) to a topic, keyed by endpoint id, with
//! the delivery engine's semantics: a delivery report is delivery; each librdkafka error is
//! classified ([`classify`]): retriable ones are retried with backoff until
//! `retry.max_duration`, then dead-lettered; permanent ones (a message too large, an invalid
//! record) are dead-lettered at once with the reason; those that mean the sink is
//! misconfigured (authorization, an unknown topic) mark it failing and keep the events in the
//! WAL until it is fixed. Dead letters handed back by `dlq replay` are produced again.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use thoth_config::{KafkaSinkConfig, RetryConfig, SinkConfig};
use thoth_event::{now_rfc3339, record, EnrichedView, FieldIndex};
use thoth_wal::Reader;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::{wait_backoff, Jitter};
use crate::dlq::{letters_for, DeadLetterQueue};
use crate::engine::REPLAY_CHECK_INTERVAL;
use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;
use crate::route::{Route, Routed};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a librdkafka error means for the message it was reported for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Passing (a broker away, a timeout, a full queue): send again after a backoff.
    Retry,
    /// This message can never be produced as it is (too large, invalid): dead-letter it.
    Permanent,
    /// The sink's settings are wrong (no access, no such topic): keep the events queued and
    /// report the sink failing until the config is fixed.
    Failing,
}

/// Classifies a librdkafka error code (`None`: an error without one, taken as passing).
pub fn classify(code: Option<RDKafkaErrorCode>) -> ErrorClass {
    use RDKafkaErrorCode::*;
    match code {
        Some(
            MessageSizeTooLarge | MessageBatchTooLarge | InvalidMessage | InvalidMessageSize
            | InvalidRecord | InvalidTimestamp | BadMessage | InvalidArgument | KeySerialization
            | ValueSerialization,
        ) => ErrorClass::Permanent,
        Some(
            TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | GroupAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | UnknownTopicOrPartition
            | UnknownTopic
            | InvalidTopic
            | SaslAuthenticationFailed
            | Authentication
            | UnsupportedSASLMechanism
            | InvalidConfig
            | Fatal,
        ) => ErrorClass::Failing,
        _ => ErrorClass::Retry,
    }
}

fn error_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

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

/// One event to produce.
struct Pending {
    tenant_id: String,
    /// The enriched event (what a dead letter keeps).
    enriched: Vec<u8>,
    key: Option<String>,
    payload: Vec<u8>,
    appended_ms: Option<u64>,
    attempts: u32,
    first_failed_at: Option<String>,
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
        let mut replay_tick = tokio::time::interval(REPLAY_CHECK_INTERVAL);
        replay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = self.reader.wait() => {}
                _ = stop.changed() => continue,
                _ = replay_tick.tick() => {
                    if !self.replay(&mut jitter, &mut stop).await {
                        break;
                    }
                    continue;
                }
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
            if let Some(first) = entries.first() {
                self.health.pending_since(first.appended_ms);
            }
            let mut unreadable = 0;
            let records: Vec<_> = entries
                .iter()
                .filter_map(|e| match record::decode(&e.data) {
                    Some(rec) => Some((rec.tenant_id, rec.json, rec.fields, Some(e.appended_ms))),
                    None => {
                        tracing::error!(sink = %self.name, seq = e.seq, "skipping an unreadable WAL record");
                        unreadable += 1;
                        None
                    }
                })
                .collect();
            self.count("filtered", unreadable);
            if !self
                .deliver(records.into_iter(), &mut jitter, &mut stop)
                .await
            {
                break; // stopping: the batch stays in the WAL
            }
            if let Err(e) = self.reader.commit(next_seq) {
                self.health
                    .failed(format!("cannot persist the cursor: {e}"));
            }
        }
        self.producer.flush(Duration::from_secs(5)).ok();
    }

    /// Produces what `dlq replay` handed back; `false` when stopped first.
    async fn replay(&self, jitter: &mut Jitter, stop: &mut watch::Receiver<bool>) -> bool {
        let Some(letters) = self.dlq.next_replay().await else {
            return true;
        };
        let records = letters
            .iter()
            .map(|l| (l.tenant_id.as_str(), l.event.get().as_bytes(), None, None));
        if !self.deliver(records, jitter, stop).await {
            return false;
        }
        self.dlq.end_replay().await;
        true
    }

    fn count(&self, outcome: &str, n: u64) {
        if n > 0 {
            self.metrics
                .events
                .with_label_values(&[&self.name, outcome])
                .inc_by(n);
        }
    }

    /// Routes and produces `records` (tenant, enriched JSON, field index, append time):
    /// every one is delivered, filtered or dead-lettered when this returns `true`; `false`
    /// when stopped first.
    async fn deliver<'a>(
        &self,
        records: impl Iterator<Item = (&'a str, &'a [u8], Option<FieldIndex>, Option<u64>)>,
        jitter: &mut Jitter,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut pending = Vec::new();
        let mut failed = Vec::new();
        let mut filtered = 0;
        for (tenant_id, json, fields, appended_ms) in records {
            let event = |payload: Vec<u8>| Pending {
                tenant_id: tenant_id.to_string(),
                enriched: json.to_vec(),
                key: EnrichedView::read(json, fields.as_ref())
                    .ok()
                    .and_then(|v| v.endpoint().map(str::to_string)),
                payload,
                appended_ms,
                attempts: 0,
                first_failed_at: None,
            };
            match self.route.route(tenant_id, json) {
                Routed::Skip => filtered += 1,
                Routed::Send(out) => pending.push(event(out.into_owned())),
                Routed::Failed(reason) => failed.push((event(Vec::new()), reason)),
            }
        }
        self.count("filtered", filtered);
        for (p, reason) in failed {
            if !self.dead_letter(vec![p], &reason, "remap", stop).await {
                return false;
            }
        }
        self.produce_all(pending, jitter, stop).await
    }

    /// Produces every event until each has a delivery report or is dead-lettered; `false`
    /// when stopped first.
    async fn produce_all(
        &self,
        mut pending: Vec<Pending>,
        jitter: &mut Jitter,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut attempt = 0;
        let mut first_failure: Option<Instant> = None;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            let mut rejected = Vec::new();
            let mut last_error = None;
            let mut failing = false;
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
            let results: Vec<_> = futures_util::future::join_all(sends).await;
            for (mut p, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(_) => {
                        delivered += 1;
                        if let Some(t) = p.appended_ms {
                            self.metrics
                                .delivery_seconds
                                .with_label_values(&[&self.name])
                                .observe(now_ms.saturating_sub(t) as f64 / 1000.0);
                        }
                    }
                    Err((e, _)) => {
                        let reason = format!("Kafka: {e}");
                        p.attempts += 1;
                        p.first_failed_at.get_or_insert_with(now_rfc3339);
                        match classify(error_code(&e)) {
                            ErrorClass::Permanent => rejected.push((p, reason)),
                            class => {
                                failing |= class == ErrorClass::Failing;
                                last_error = Some(reason);
                                retry.push(p);
                            }
                        }
                    }
                }
            }
            self.count("delivered", delivered);
            for (p, reason) in rejected {
                if !self.dead_letter(vec![p], &reason, "rejected", stop).await {
                    return false;
                }
            }
            if retry.is_empty() {
                self.health.delivered();
                return true;
            }
            attempt += 1;
            let reason = last_error.unwrap_or_default();
            self.metrics.retries.with_label_values(&[&self.name]).inc();
            self.count("retried", retry.len() as u64);
            if failing {
                // The config must change: waiting longer is right, dead-lettering is not.
                self.health.failing(reason);
            } else {
                self.health.failed(reason.clone());
                let first = *first_failure.get_or_insert_with(Instant::now);
                if first.elapsed() >= self.retry.max_duration {
                    let reason = format!(
                        "{reason} (still failing after retry.max_duration {:?})",
                        self.retry.max_duration
                    );
                    return self.dead_letter(retry, &reason, "max_duration", stop).await;
                }
            }
            if !wait_backoff(&self.retry, attempt, jitter.next_unit(), stop).await {
                return false;
            }
            pending = retry;
        }
        true
    }

    /// Writes dead letters durably (the enriched events), retrying the write until it works;
    /// `false` when stopped first (the events stay in the WAL).
    async fn dead_letter(
        &self,
        events: Vec<Pending>,
        reason: &str,
        class: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let letters = letters_for(
            &self.name,
            reason,
            events.iter().map(|p| {
                (
                    p.tenant_id.as_str(),
                    &p.enriched[..],
                    p.attempts.max(1),
                    p.first_failed_at.as_deref(),
                )
            }),
        );
        self.dlq
            .append_until_stored(
                letters,
                class,
                &self.retry,
                &self.health,
                &self.metrics,
                stop,
            )
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_errors_are_classified() {
        use RDKafkaErrorCode::*;
        for code in [MessageSizeTooLarge, InvalidMessageSize, InvalidRecord] {
            assert_eq!(classify(Some(code)), ErrorClass::Permanent, "{code:?}");
        }
        for code in [
            TopicAuthorizationFailed,
            UnknownTopicOrPartition,
            UnknownTopic,
        ] {
            assert_eq!(classify(Some(code)), ErrorClass::Failing, "{code:?}");
        }
        for code in [
            MessageTimedOut,
            QueueFull,
            NotEnoughReplicas,
            LeaderNotAvailable,
            BrokerTransportFailure,
            AllBrokersDown,
        ] {
            assert_eq!(classify(Some(code)), ErrorClass::Retry, "{code:?}");
        }
        assert_eq!(classify(None), ErrorClass::Retry);
    }
}
