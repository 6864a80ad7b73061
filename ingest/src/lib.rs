//! Ingest: every way events come in — the HTTP API's intake (`POST /v1/events`, [`IngestState`]),
//! signed webhooks (`POST /v1/hooks/...`, [`HookSource`]), Kafka topics ([`KafkaSource`]) —
//! with bodies read streaming and bounded ([`read_body`]), authentication from the headers
//! (bearer tokens bound to tenants, [`TokenTable`]; client certificates, [`TlsSetup`]),
//! per-token rate limits ([`RateLimiter`]), webhook replay ids ([`replay`]) and the bounded
//! HTTP listener ([`serve`]).
//!
//! Ingest turns bytes into validated [`thoth_event::Event`]s and hands them to a [`Submit`];
//! it knows nothing of the WAL or sinks.

mod auth;
mod batch_slots;
mod body;
mod error;
mod events;
mod hooks;
mod kafka;
mod metrics;
mod rate;
pub mod replay;
mod server;
mod setup_error;
mod submit;
mod tls;

use std::sync::Arc;

use axum::routing::post;
use axum::Router;

pub use auth::{Access, AuthError, Grant, Scope, SharedAccess, TokenTable};
pub use batch_slots::BatchSlots;
pub use body::{body_format, gunzip, read_body, read_body_to_file};
pub use error::{ApiError, Detail};
pub use events::IngestState;
pub use hooks::HookSource;
pub use kafka::{KafkaMetrics, KafkaSource, Rejects};
pub use metrics::IngestMetrics;
pub use rate::RateLimiter;
pub use server::{serve, ListenerLimits};
pub use setup_error::SetupError;
pub use submit::{Submit, SubmitError, SubmitFuture};
pub use tls::{ClientIdentity, TlsSetup};

/// The ingest routes: `POST /v1/events` and `POST /v1/hooks/{source}`.
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/hooks/{source}", post(hooks::post_hook))
        .with_state(state)
}
