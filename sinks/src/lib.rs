//! Sinks: delivery from the WAL to destinations. Each sink reads the WAL with its own cursor,
//! keeps only its tenants' events, delivers, and moves its cursor only past what it delivered.

mod backoff;
mod file;
mod health;
mod metrics;

pub use backoff::{backoff, Jitter};
pub use file::FileSink;
pub use health::{HealthSnapshot, SinkHealth, SinkStatus, FAILING_AFTER};
pub use metrics::SinkMetrics;
