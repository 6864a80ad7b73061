//! `[[sources.kafka]]`: a consumer group member reading decisions and check-ins.
//!
//! At least once: a message's offset is stored only after its events are durable in the WAL
//! (librdkafka commits stored offsets in the background, on revoke and at shutdown); so an
//! offset is never committed for an event that is not in the WAL. A message that cannot be
//! accepted goes to the `ingest` dead-letter queue with its topic, partition and offset, and
//! its offset is stored — one poison message never stalls a partition. When the WAL is full
//! the consumer pauses its partitions (no unbounded queue) and resumes when there is room.

use crate::setup_error::SetupError;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thoth_config::KafkaSourceConfig;
use thoth_event::{decode_batch, now_rfc3339, BodyFormat, Limits};
use tokio::sync::watch;

use crate::submit::{Submit, SubmitError};

/// Most messages taken into one WAL append.
const MAX_BATCH_MESSAGES: usize = 500;

fn origin(msg: &OwnedMessage) -> String {
    format!("kafka:{}/{}/{}", msg.topic(), msg.partition(), msg.offset())
}

/// How often a paused consumer tries the WAL again.
const PAUSED_RETRY: Duration = Duration::from_millis(200);

/// Where an event that could not be accepted is kept: the `ingest` dead-letter queue.
pub trait Rejects: Send + Sync + 'static {
    /// Stores the payload of a refused message durably, with why and where it came from.
    fn reject(&self, payload: &[u8], reason: &str, origin: &str) -> std::io::Result<()>;
}

/// Kafka source metrics.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// `thoth_kafka_messages_total{topic,outcome}`: `accepted`, `dead_lettered`.
    pub messages: IntCounterVec,
    /// `thoth_kafka_consumer_lag{topic,partition}`, from librdkafka statistics.
    pub lag: IntGaugeVec,
    /// `thoth_kafka_paused{source}`: 1 while the WAL is full and the partitions are paused.
    pub paused: IntGaugeVec,
}

impl KafkaMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let messages = IntCounterVec::new(
            Opts::new(
                "thoth_kafka_messages_total",
                "Kafka messages handled, by topic and outcome.",
            ),
            &["topic", "outcome"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "thoth_kafka_consumer_lag",
                "Consumer lag per partition (librdkafka statistics).",
            ),
            &["topic", "partition"],
        )?;
        let paused = IntGaugeVec::new(
            Opts::new(
                "thoth_kafka_paused",
                "1 while the source's partitions are paused (WAL full).",
            ),
            &["source"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        Ok(KafkaMetrics {
            messages,
            lag,
            paused,
        })
    }
}

struct Context {
    metrics: KafkaMetrics,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (id, p) in &t.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[topic, &id.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Hand over exactly what is in the WAL.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit on revoke");
            }
        }
    }
}

enum Submitted {
    Accepted,
    Stopped,
    NeverFits(String),
}

/// A running Kafka source.
pub struct KafkaSource {
    name: String,
    topics: Vec<String>,
    tenant_id: Option<String>,
    consumer: StreamConsumer<Context>,
    submit: Arc<dyn Submit>,
    rejects: Arc<dyn Rejects>,
    access: crate::SharedAccess,
    limits: Limits,
    metrics: KafkaMetrics,
}

impl KafkaSource {
    pub fn new(
        config: &KafkaSourceConfig,
        submit: Arc<dyn Submit>,
        rejects: Arc<dyn Rejects>,
        access: crate::SharedAccess,
        limits: Limits,
        metrics: KafkaMetrics,
    ) -> Result<KafkaSource, SetupError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", &config.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            // Bounds what librdkafka prefetches per partition.
            .set("queued.max.messages.kbytes", "16384");
        for (k, v) in &config.librdkafka {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<Context> = cc
            .create_with_context(Context {
                metrics: metrics.clone(),
            })
            .map_err(|e| SetupError::Kafka(format!("sources.kafka {:?}: {e}", config.name)))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            SetupError::Kafka(format!("sources.kafka {:?}: subscribe: {e}", config.name))
        })?;
        Ok(KafkaSource {
            name: config.name.clone(),
            topics: config.topics.clone(),
            tenant_id: config.tenant_id.clone(),
            consumer,
            submit,
            rejects,
            access,
            limits,
            metrics,
        })
    }

    /// Consumes until `stop`; then commits what is stored.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(source = %self.name, topics = ?self.topics, "Kafka source started");
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "Kafka consumer error");
                    continue;
                }
            };
            // Take what is already fetched too: one WAL append (one fsync) for the lot.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_MESSAGES {
                match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    _ => break,
                }
            }
            if !self.handle(batch, &mut stop).await {
                break;
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(source = %self.name, error = %e, "final commit");
        }
        tracing::info!(source = %self.name, "Kafka source stopped");
    }

    /// Accepts or dead-letters each message, then stores their offsets. `false` when stopped
    /// before the messages were taken (their offsets are not stored).
    async fn handle(&self, batch: Vec<OwnedMessage>, stop: &mut watch::Receiver<bool>) -> bool {
        let now = now_rfc3339();
        let mut events = Vec::new();
        let mut accepted: Vec<&OwnedMessage> = Vec::new();
        for msg in &batch {
            let payload = msg.payload().unwrap_or_default();
            let decoded = decode_batch(payload, BodyFormat::Ndjson, &self.limits, &now)
                .map_err(|e| match &e {
                    thoth_event::BatchError::Invalid { errors, .. } => errors
                        .iter()
                        .map(|e| format!("line {}: {}", e.index, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                })
                .and_then(|evs| self.check_tenants(&evs).map(|()| evs));
            match decoded {
                Ok(evs) => {
                    events.extend(evs);
                    accepted.push(msg);
                }
                Err(reason) => {
                    self.dead_letter(payload, &reason, &origin(msg), stop).await;
                    self.count(msg, "dead_lettered");
                }
            }
        }
        if !events.is_empty() {
            match self.submit_until_accepted(events, stop).await {
                Submitted::Accepted => accepted.iter().for_each(|m| self.count(m, "accepted")),
                Submitted::Stopped => return false,
                Submitted::NeverFits(why) => {
                    // Too big together: each message on its own.
                    for msg in accepted {
                        let payload = msg.payload().unwrap_or_default();
                        let evs = decode_batch(payload, BodyFormat::Ndjson, &self.limits, &now)
                            .unwrap_or_default();
                        match self.submit_until_accepted(evs, stop).await {
                            Submitted::Accepted => self.count(msg, "accepted"),
                            Submitted::Stopped => return false,
                            Submitted::NeverFits(_) => {
                                self.dead_letter(payload, &why, &origin(msg), stop).await;
                                self.count(msg, "dead_lettered");
                            }
                        }
                    }
                }
            }
        }
        for msg in &batch {
            if let Err(e) = self
                .consumer
                .store_offset(msg.topic(), msg.partition(), msg.offset())
            {
                // Revoked meanwhile: the new owner reads it again (at least once).
                tracing::debug!(source = %self.name, error = %e, "offset not stored");
            }
        }
        true
    }

    fn count(&self, msg: &OwnedMessage, outcome: &str) {
        self.metrics
            .messages
            .with_label_values(&[msg.topic(), outcome])
            .inc();
    }

    fn check_tenants(&self, events: &[thoth_event::Event]) -> Result<(), String> {
        for (i, e) in events.iter().enumerate() {
            if let Some(own) = &self.tenant_id {
                if e.tenant_id != *own {
                    return Err(format!(
                        "line {i}: this source takes events of tenant {own:?} only, not {:?}",
                        e.tenant_id
                    ));
                }
            } else if !self.access.load().tenants.contains(&e.tenant_id) {
                return Err(format!(
                    "line {i}: tenant {:?} is not configured in [[tenants]]",
                    e.tenant_id
                ));
            }
        }
        Ok(())
    }

    /// Writes the message to the dead-letter queue, retrying until it works or the source
    /// stops.
    async fn dead_letter(
        &self,
        payload: &[u8],
        reason: &str,
        origin: &str,
        stop: &mut watch::Receiver<bool>,
    ) {
        tracing::warn!(source = %self.name, %origin, %reason, "Kafka message dead-lettered");
        loop {
            match self.rejects.reject(payload, reason, origin) {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(source = %self.name, error = %e, "cannot write the dead letter; retrying")
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(PAUSED_RETRY) => {}
            }
        }
    }

    /// Submits until the events are durable. While the WAL is full the partitions are paused;
    /// messages prefetched meanwhile are rewound so nothing queues up in memory.
    async fn submit_until_accepted(
        &self,
        events: Vec<thoth_event::Event>,
        stop: &mut watch::Receiver<bool>,
    ) -> Submitted {
        let mut paused: Option<TopicPartitionList> = None;
        let result = loop {
            match self.submit.submit(events.clone()).await {
                Ok(_) => break Submitted::Accepted,
                Err(SubmitError::ShuttingDown) => break Submitted::Stopped,
                Err(SubmitError::Full) | Err(SubmitError::Unavailable(_)) => {
                    if paused.is_none() {
                        if let Ok(assignment) = self.consumer.assignment() {
                            if self.consumer.pause(&assignment).is_ok() {
                                tracing::warn!(source = %self.name, "WAL full: partitions paused");
                                self.metrics.paused.with_label_values(&[&self.name]).set(1);
                                paused = Some(assignment);
                            }
                        }
                    }
                    // Keep polling so rebalances go on; rewind anything prefetched.
                    let deadline = tokio::time::sleep(PAUSED_RETRY);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => return Submitted::Stopped,
                            _ = &mut deadline => break,
                            m = self.consumer.recv() => {
                                if let Ok(m) = m {
                                    let _ = self.consumer.seek(m.topic(), m.partition(), Offset::Offset(m.offset()), Duration::from_secs(1));
                                }
                            }
                        }
                    }
                }
                Err(SubmitError::TooLarge(why)) => break Submitted::NeverFits(why),
            }
        };
        if let Some(assignment) = paused {
            // Resume what is still assigned (a rebalance may have changed it).
            let current = self.consumer.assignment().unwrap_or(assignment);
            let _ = self.consumer.resume(&current);
            self.metrics.paused.with_label_values(&[&self.name]).set(0);
            tracing::info!(source = %self.name, "WAL has room: partitions resumed");
        }
        result
    }
}
