//! Sinks: delivery from the WAL to destinations. Each sink reads the WAL with its own cursor,
//! keeps only its tenants' events, delivers, and moves its cursor only past what it delivered
//! or dead-lettered.
//!
//! * [`driver`]: the WAL side of every sink, written once — batches, records, routing
//!   ([`Route`]: tenants, condition, remap), coalesced cursor commits, `dlq replay`.
//! * [`retry`](crate::retry): the one retry loop (backoff, `Retry-After`, splitting, dead
//!   letters, `max_duration`) every delivery sends through.
//! * Deliveries: HTTP (`http`, for every HTTP destination: [`SplunkHec`],
//!   [`Elasticsearch`], [`Sentinel`], [`Webhook`] say how to encode events and read answers,
//!   [`Destination`]), the file sink and Kafka.
//! * [`build`], [`preflight`] and [`probe`]: a sink from its config; `verify` and
//!   `test-webhook` probe through the same request path as delivery.
//! * Dead letters ([`DeadLetterQueue`]), health ([`SinkHealth`]), metrics ([`SinkMetrics`]),
//!   `/v1/tap` ([`Tap`]).

mod append;
mod build;
pub mod concurrency;
mod context;
mod destination;
mod dlq;
pub mod driver;
mod elasticsearch;
mod error;
mod file;
mod health;
mod http;
mod kafka;
mod metrics;
mod pause;
mod retry;
mod route;
mod sentinel;
mod splunk_hec;
mod tap;
mod watermark;
mod webhook;

pub use build::{build, destination, preflight, probe, SinkParts, PROBE_TIMEOUT};
pub use destination::{
    destination_id, retry_after, Destination, EncodeError, Framing, ItemOutcome, Outcome, Reply,
    RequestBody,
};
pub use dlq::{
    parse_letters, DeadLetter, DeadLetterQueue, Listing, Unreadable, DEAD_LETTER_VERSION,
};
pub use driver::{ProbeResult, Sink};
pub use elasticsearch::{write_ecs_document, Elasticsearch, ECS_VERSION};
pub use error::SinkError;
pub use health::{HealthSnapshot, SinkHealth, SinkStatus, FAILING_AFTER};
pub use kafka::{classify as classify_kafka_error, ErrorClass as KafkaErrorClass};
pub use metrics::{SinkCounters, SinkMetrics};
pub use route::{Route, Routed};
pub use sentinel::Sentinel;
pub use splunk_hec::SplunkHec;
pub use tap::{Tap, TapFilter, TapSubscription, MAX_TAP_RATE};
pub use watermark::Watermark;
pub use webhook::Webhook;
