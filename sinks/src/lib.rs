//! Sinks: delivery from the WAL to destinations. Each sink reads the WAL with its own cursor,
//! keeps only its tenants' events, delivers, and moves its cursor only past what it delivered
//! or dead-lettered.
//!
//! * [`FileSink`]: enriched NDJSON to a file.
//! * [`HttpSink`]: the delivery engine for every HTTP destination; a destination module
//!   ([`SplunkHec`], [`Elasticsearch`]) only says how to encode events and read responses
//!   ([`Destination`]).

mod append;
mod backoff;
mod client;
pub mod concurrency;
mod destination;
mod dlq;
mod elasticsearch;
mod engine;
mod file;
mod health;
mod kafka;
mod metrics;
mod pause;
mod route;
mod sentinel;
mod splunk_hec;
mod tap;
mod watermark;
mod webhook;

pub use backoff::{backoff, Jitter};
pub use client::build as build_http_client;
pub use destination::{destination_id, retry_after, Destination, Framing, ItemOutcome, Outcome};
pub use dlq::{
    parse_letters, DeadLetter, DeadLetterQueue, Listing, Unreadable, DEAD_LETTER_VERSION,
};
pub use elasticsearch::{write_ecs_document, Elasticsearch};
pub use engine::{send_one, HttpSink, HttpSinkParts, ProbeResult};
pub use file::{append_one as append_one_file, FileSink};
pub use health::{HealthSnapshot, SinkHealth, SinkStatus, FAILING_AFTER};
pub use kafka::{produce_one as produce_one_kafka, producer as kafka_producer, KafkaSink};
pub use metrics::SinkMetrics;
pub use route::{Route, Routed};
pub use sentinel::Sentinel;
pub use splunk_hec::SplunkHec;
pub use tap::{Tap, TapFilter, TapSubscription, MAX_TAP_RATE};
pub use watermark::Watermark;
pub use webhook::Webhook;
