//! `POST /v1/events`: authenticate, read, decode and validate, authorize each event's tenant,
//! then hand the whole batch over and answer 200 only once it is durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use thoth_event::{
    count_events, decode_batch, now_rfc3339, BatchError, BodyFormat, Event, EventType, Limits,
};

use crate::auth::Scope;
use crate::body::{body_format, read_body};
use crate::error::{ApiError, Detail};
use crate::metrics::IngestMetrics;
use crate::submit::{Submit, SubmitError};

/// Everything the ingest routes need.
pub struct IngestState {
    pub submit: Arc<dyn Submit>,
    /// Tokens and tenants; replaced by a config reload.
    pub access: crate::SharedAccess,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// Set when the gateway begins shutting down: new batches get 503.
    pub shutting_down: Arc<AtomicBool>,
    /// Inbound webhook sources by name (`/v1/hooks/{name}`).
    pub hooks: std::collections::HashMap<String, crate::hooks::HookSource>,
    pub metrics: IngestMetrics,
    /// State shared with the other replicas (replay ids, rate limits).
    pub shared: thoth_state::SharedState,
    /// How many bodies are decoded and written at once ([`crate::BatchSlots`]).
    pub batch_slots: crate::BatchSlots,
}

/// Seconds a client is asked to wait when the gateway cannot take a batch now.
const RETRY_AFTER_S: u64 = 1;

impl IngestState {
    pub(crate) fn reject(&self, reason: &str, events: usize) {
        self.metrics
            .rejected
            .with_label_values(&[reason])
            .inc_by(events.max(1) as u64);
    }
}

pub async fn post_events(
    State(state): State<Arc<IngestState>>,
    client: Option<axum::Extension<crate::tls::ClientIdentity>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = client.and_then(|axum::Extension(c)| c.0);
    match handle(&state, client, &headers, body).await {
        Ok(n) => (StatusCode::OK, Json(serde_json::json!({ "accepted": n }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &IngestState,
    client: Option<crate::auth::Grant>,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, ApiError> {
    if state.shutting_down.load(Ordering::Acquire) {
        state.reject("shutting_down", 0);
        return Err(shutting_down());
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let grant = state
        .access
        .load()
        .tokens
        .identify(authorization, client.as_ref())
        .map_err(|e| {
            state.reject("unauthorized", 0);
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.message())
        })?;
    let scope = grant.scope;
    let format = body_format(headers).inspect_err(|_| state.reject("unsupported_media_type", 0))?;
    let bytes = read_body(headers, body, state.max_body_bytes, state.body_timeout)
        .await
        .inspect_err(|e| state.reject(e.code, 0))?;

    // The rate limit is taken before anything is decoded: a client over its limit costs one
    // pass over its bytes, not a parse.
    if let Some(limit) = &grant.limit {
        let count = count_events(&bytes, format == BodyFormat::Ndjson);
        limit.take_shared(count, &state.shared).await.map_err(|retry_after| {
            state.reject("rate_limited", count);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this token may submit {} events per second (max_events_per_second); retry in {retry_after} s — nothing of this request was accepted",
                    limit.per_second()
                ),
            )
            .retry_after(retry_after)
        })?;
    }
    // Held until the batch is durable: its events and frame exist only while it has a slot.
    let _slot = state.batch_slots.take().await;
    let events = decode(state, bytes, format).await?;
    authorize_tenants(state, &scope, &events)?;
    submit(state, events, "http")
        .await
        .map_err(|e| submit_error(state, e))
}

/// Bodies at least this large are decoded on a blocking thread, so that their CPU time (linear:
/// tens of milliseconds for the largest bodies) never holds up the async workers that serve
/// other requests. Smaller ones take at most a few milliseconds of a worker, less than moving
/// them to another thread costs: offloading every 500-event batch cost 4 % of the pipeline's
/// throughput (BENCHMARKS.md).
const DECODE_OFFLOAD_BYTES: usize = 1024 * 1024;

/// Decodes and validates a body (400 / 413 when it does not decode).
pub(crate) async fn decode(
    state: &IngestState,
    bytes: Bytes,
    format: BodyFormat,
) -> Result<Vec<Event>, ApiError> {
    let received_at = now_rfc3339();
    let limits = state.limits;
    let decoded = if bytes.len() < DECODE_OFFLOAD_BYTES {
        decode_batch(&bytes, format, &limits, &received_at)
    } else {
        tokio::task::spawn_blocking(move || decode_batch(&bytes, format, &limits, &received_at))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("decoding failed: {e}"),
                )
            })?
    };
    decoded.map_err(|e| batch_error(state, e))
}

/// The 400 / 413 answer for a batch that does not decode.
pub(crate) fn batch_error(state: &IngestState, e: BatchError) -> ApiError {
    match e {
        BatchError::Invalid { errors, total } => {
            state.reject("invalid", total);
            let mut details: Vec<Detail> = errors
                .into_iter()
                .map(|e| Detail {
                    index: Some(e.index),
                    message: e.message,
                })
                .collect();
            if total > details.len() {
                details.push(Detail {
                    index: None,
                    message: format!("… and {} more invalid events", total - details.len()),
                });
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_events",
                format!("{total} event(s) are invalid; no event of this request was accepted"),
            )
            .with_details(details)
        }
        BatchError::Body(msg) => {
            state.reject("invalid", 0);
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", msg)
        }
        BatchError::TooManyEvents { .. } => {
            state.reject("too_many_events", 0);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                e.to_string(),
            )
        }
    }
}

/// A refused submission (nothing of the batch was accepted).
pub(crate) struct Refused {
    error: SubmitError,
    events: usize,
}

/// Hands a validated batch over; counts it as received once durable.
pub(crate) async fn submit(
    state: &IngestState,
    events: Vec<Event>,
    source: &str,
) -> Result<usize, Refused> {
    let count = events.len();
    let mut by_type = [0u64; 4];
    for e in &events {
        by_type[type_slot(e.event_type)] += 1;
    }
    let n = state.submit.submit(events).await.map_err(|error| Refused {
        error,
        events: count,
    })?;
    for t in EventType::ALL {
        let n = by_type[type_slot(t)];
        if n > 0 {
            state
                .metrics
                .received
                .with_label_values(&[source, t.as_str()])
                .inc_by(n);
        }
    }
    Ok(n)
}

/// The 503 / 413 answer for a refused submission.
pub(crate) fn submit_error(state: &IngestState, refused: Refused) -> ApiError {
    let count = refused.events;
    match refused.error {
        SubmitError::Full => {
            state.reject("wal_full", count);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wal_full",
                "the gateway's write-ahead log is full while sinks catch up; retry later",
            )
            .retry_after(RETRY_AFTER_S)
        }
        SubmitError::ShuttingDown => {
            state.reject("shutting_down", count);
            shutting_down()
        }
        SubmitError::Unavailable(why) => {
            state.reject("wal_unavailable", count);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wal_unavailable",
                format!("the write-ahead log cannot be written right now ({why}); retry later"),
            )
            .retry_after(RETRY_AFTER_S)
        }
        SubmitError::TooLarge(why) => {
            state.reject("too_large", count);
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", why)
        }
    }
}

fn type_slot(t: EventType) -> usize {
    match t {
        EventType::Decision => 0,
        EventType::Checkin => 1,
        EventType::Alert => 2,
        EventType::WebhookTest => 3,
    }
}

pub(crate) fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the gateway is shutting down; retry against another instance or after the restart",
    )
    .retry_after(RETRY_AFTER_S)
}

/// A tenant token may only submit its own tenant's events (403 otherwise, without saying
/// whether the other tenant exists); an admin token any listed tenant's (400 for others).
fn authorize_tenants(state: &IngestState, scope: &Scope, events: &[Event]) -> Result<(), ApiError> {
    match scope {
        Scope::Tenant(own) => {
            let foreign: Vec<Detail> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.tenant_id != *own)
                .map(|(i, _)| Detail {
                    index: Some(i),
                    message: format!(
                        "field `tenant_id`: this token may only submit events of tenant {own:?}"
                    ),
                })
                .take(thoth_event::MAX_REPORTED_ERRORS)
                .collect();
            if !foreign.is_empty() {
                state.reject("forbidden", events.len());
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_tenant",
                    format!("this token may only submit events of tenant {own:?}; no event of this request was accepted"),
                )
                .with_details(foreign));
            }
        }
        Scope::Admin => check_listed_tenants(state, events)?,
    }
    Ok(())
}

/// Every event must be of a tenant `[[tenants]]` lists (400 otherwise).
pub(crate) fn check_listed_tenants(state: &IngestState, events: &[Event]) -> Result<(), ApiError> {
    let access = state.access.load();
    let unknown: Vec<Detail> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| !access.tenants.contains(&e.tenant_id))
        .map(|(i, e)| Detail {
            index: Some(i),
            message: format!(
                "field `tenant_id`: tenant {:?} is not configured in [[tenants]]",
                e.tenant_id
            ),
        })
        .take(thoth_event::MAX_REPORTED_ERRORS)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    state.reject("invalid", unknown.len());
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_events",
        format!(
            "{} event(s) are invalid; no event of this request was accepted",
            unknown.len()
        ),
    )
    .with_details(unknown))
}
