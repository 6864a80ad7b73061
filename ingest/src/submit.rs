//! The hand-off from ingest to the rest of the pipeline. Ingest never knows about the WAL or
//! sinks: the binary gives it something that implements [`Submit`].

use std::future::Future;
use std::pin::Pin;

use thoth_event::Event;

/// Why a batch could not be accepted. Every variant means: nothing of the batch was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The WAL is full: back off and retry.
    Full,
    /// The gateway is shutting down.
    ShuttingDown,
    /// The WAL cannot be written right now (e.g. disk full).
    Unavailable(String),
    /// The batch can never fit.
    TooLarge(String),
}

pub type SubmitFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, SubmitError>> + Send + 'a>>;

/// Accepts validated events: enriches them and makes them durable. Resolves only once every
/// event of the batch is durable (or none is).
pub trait Submit: Send + Sync + 'static {
    fn submit(&self, events: Vec<Event>) -> SubmitFuture<'_>;
}
