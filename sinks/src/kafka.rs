//! `kafka`: produces enriched events (or their remap) to a topic, keyed by endpoint id,
//! through the retry loop every sink uses: a delivery report is delivery; each librdkafka error is
//! classified ([`classify`]): retriable ones are retried with backoff until
//! `retry.max_duration`, then dead-lettered; permanent ones (a message too large, an invalid
//! record) are dead-lettered at once with the reason; those that mean the sink is
//! misconfigured (authorization, an unknown topic) mark it failing and keep the events in the
//! WAL until it is fixed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use thoth_config::KafkaSinkConfig;
use thoth_wal::record::EnrichedRecord;
use tokio::sync::watch;

use crate::concurrency::Slots;
use crate::context::SinkContext;
use crate::destination::{BoxFuture, ItemOutcome, Outcome};
use crate::driver::{Delivery, Event, ProbeResult};
use crate::retry::{deliver_groups, Attempt, Carries};
use crate::SinkError;

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

/// A Kafka sink's delivery.
pub struct KafkaDelivery {
    ctx: Arc<SinkContext>,
    topic: String,
    producer: FutureProducer,
    /// One batch at a time (its messages are produced together).
    slots: Arc<Slots>,
}

/// An event to produce, keyed by its endpoint.
pub(crate) struct Message {
    event: Event,
    key: Option<String>,
}

impl Carries for Message {
    fn event(&self) -> &Event {
        &self.event
    }
    fn event_mut(&mut self) -> &mut Event {
        &mut self.event
    }
}

impl KafkaDelivery {
    pub fn new(ctx: Arc<SinkContext>, kafka: &KafkaSinkConfig) -> Result<KafkaDelivery, SinkError> {
        Ok(KafkaDelivery {
            ctx,
            topic: kafka.topic.clone(),
            producer: producer(kafka)?,
            slots: Arc::new(Slots::new(Some(1), 1)),
        })
    }

    fn message(event: Event) -> Message {
        // Keyed by the enriched event's endpoint, whatever the remap made of it.
        let key = event
            .enriched()
            .view()
            .ok()
            .and_then(|v| v.endpoint().map(str::to_string));
        Message { event, key }
    }
}

impl Attempt<Message> for KafkaDelivery {
    /// Produces every message and waits for each delivery report.
    fn send<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let sends = messages.iter().map(|m| {
                let mut record = FutureRecord::to(&self.topic).payload(&m.event.sent().json[..]);
                if let Some(k) = &m.key {
                    record = record.key(k);
                }
                self.producer.send(record, SEND_TIMEOUT)
            });
            let results = futures_util::future::join_all(sends).await;
            Outcome::Partial(
                results
                    .into_iter()
                    .map(|r| match r {
                        Ok(_) => ItemOutcome::Delivered,
                        Err((e, _)) => {
                            let reason = format!("Kafka: {e}");
                            match classify(e.rdkafka_error_code()) {
                                ErrorClass::Permanent => ItemOutcome::Reject(reason),
                                ErrorClass::Failing => ItemOutcome::Failing(reason),
                                ErrorClass::Retry => ItemOutcome::Retry(reason),
                            }
                        }
                    })
                    .collect(),
            )
        })
    }
}

impl Delivery for KafkaDelivery {
    fn deliver(&self, events: Vec<Event>, mut stop: watch::Receiver<bool>) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let messages = events.into_iter().map(Self::message).collect();
            let max_duration = Some(self.ctx.retry.max_duration);
            deliver_groups(&self.ctx, vec![messages], max_duration, self, &mut stop).await
        })
    }

    /// Produces one message now and waits for the broker's acknowledgement.
    fn probe(&self, record: EnrichedRecord) -> BoxFuture<'_, ProbeResult> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let message = [Self::message(Event::new(record, None))];
            let error = match self.send(&message).await {
                Outcome::Partial(results) => match results.into_iter().next() {
                    Some(ItemOutcome::Delivered) => None,
                    Some(
                        ItemOutcome::Retry(r) | ItemOutcome::Reject(r) | ItemOutcome::Failing(r),
                    ) => Some(format!("topic {}: {r}", self.topic)),
                    None => Some("no delivery report".into()),
                },
                other => Some(format!("{other:?}")),
            };
            ProbeResult {
                ok: error.is_none(),
                status: None,
                latency_ms: started.elapsed().as_millis() as u64,
                error,
            }
        })
    }

    fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    fn close(&self) {
        self.producer.flush(Duration::from_secs(5)).ok();
    }
}

/// The sink's producer. Creating one checks the librdkafka settings without connecting.
pub fn producer(kafka: &KafkaSinkConfig) -> Result<FutureProducer, SinkError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4");
    for (k, v) in &kafka.librdkafka {
        cc.set(k, v);
    }
    cc.create().map_err(|e| SinkError::Kafka(e.to_string()))
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
