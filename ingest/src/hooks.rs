//! `POST /v1/hooks/{source}`: signed webhooks from the Thoth GovAPI (alerts, webhook tests).
//!
//! Each `[[sources.webhooks]]` verifies Standard Webhooks signatures with any of its secrets,
//! refuses timestamps outside its tolerance and `webhook-id`s already accepted (replay), and
//! accepts one event or `{"events":[...]}`, answering 200 only once they are durable.
//!
//! Order of checks: the signature headers (present, timestamp within the tolerance, id not
//! seen) before the body is read; then the body, bounded and with the body timeout; then the
//! signature over it; then the events. The id is claimed atomically and durably before the
//! append (see [`crate::replay`]), so concurrent copies of one request are accepted once.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use thoth_config::WebhookSourceConfig;
use thoth_event::{check_webhook_headers, BodyFormat, WebhookSecret};

use crate::body::read_body;
use crate::error::ApiError;
use crate::events::{submit_error, IngestState};
use crate::replay::{ClaimError, SeenIds};

/// One configured inbound webhook source.
pub struct HookSource {
    pub name: String,
    pub tenant_id: Option<String>,
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
    seen: Arc<SeenIds>,
}

impl HookSource {
    /// Opens a source, loading the ids it accepted that are still within their window.
    pub fn open(config: &WebhookSourceConfig, dir: &Path) -> std::io::Result<HookSource> {
        Ok(HookSource {
            name: config.name.clone(),
            tenant_id: config.tenant_id.clone(),
            secrets: config.secrets.clone(),
            tolerance: config.tolerance,
            seen: Arc::new(SeenIds::open(
                &dir.join(format!("{}.seen", config.name)),
                config.tolerance.as_secs() as i64,
                now_s(),
            )?),
        })
    }
}

fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(borrow)]
    events: &'a RawValue,
}

fn unauthorized(message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
}

pub async fn post_hook(
    State(state): State<Arc<IngestState>>,
    UrlPath(source): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&state, &source, &headers, body).await {
        Ok(n) => (StatusCode::OK, Json(serde_json::json!({ "accepted": n }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &IngestState,
    source: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, ApiError> {
    if state.shutting_down.load(Ordering::Acquire) {
        return Err(crate::events::shutting_down());
    }
    let Some(hook) = state.hooks.get(source) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no [[sources.webhooks]] named {source:?}"),
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some("application/json") {
        state.reject("unsupported_media_type", 0);
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a webhook body must be application/json",
        ));
    }
    // The headers first: nothing of the body is read for a request they already refuse.
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let tolerance = hook.tolerance.as_secs();
    let signed = check_webhook_headers(
        header_str("webhook-id"),
        header_str("webhook-timestamp"),
        header_str("webhook-signature"),
        now_s(),
        tolerance,
    )
    .map_err(|e| {
        state.reject("invalid_signature", 0);
        unauthorized(format!("webhook source {:?}: {e}", hook.name))
    })?;
    let replayed = || {
        state.reject("replayed", 0);
        unauthorized(format!(
            "webhook-id {:?} was already accepted within its tolerance window of {tolerance} s (replay)",
            signed.id
        ))
    };
    if hook.seen.contains(signed.id, now_s()) {
        return Err(replayed());
    }
    let bytes = read_body(headers, body, state.max_body_bytes, state.body_timeout)
        .await
        .inspect_err(|e| state.reject(e.code, 0))?;
    signed.verify(&hook.secrets, &bytes).map_err(|e| {
        state.reject("invalid_signature", 0);
        unauthorized(format!("webhook source {:?}: {e}", hook.name))
    })?;

    let payload = match serde_json::from_slice::<Wrapped>(&bytes) {
        Ok(w) if !bytes_has_type(&bytes) => bytes.slice_ref(w.events.get().as_bytes()),
        _ => bytes.clone(),
    };
    let _slot = state.batch_slots.take().await;
    let events = crate::events::decode(state, payload, BodyFormat::Json).await?;
    if let Some(own) = &hook.tenant_id {
        if let Some((i, e)) = events.iter().enumerate().find(|(_, e)| e.tenant_id != *own) {
            state.reject("forbidden", events.len());
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_tenant",
                format!(
                    "webhook source {:?} may only deliver events of tenant {own:?}; event {i} is of {:?}",
                    hook.name, e.tenant_id
                ),
            ));
        }
    } else {
        crate::events::check_listed_tenants(state, &events)?;
    }

    // Claimed before the append, atomically: of concurrent copies one gets here. The claim
    // lasts until the signed timestamp is out of tolerance, when the request is refused anyway.
    let id = signed.id.to_string();
    let expires_at = signed.timestamp.saturating_add(tolerance as i64);
    // With shared state the fleet-wide claim decides first (a copy at another replica is a
    // replay too); the local claim is still taken, so the id stays refused here if the
    // server is unreachable later.
    let shared_key = format!("{}:{id}", hook.name);
    let ttl = Duration::from_secs(expires_at.saturating_sub(now_s()).max(1) as u64);
    if state.shared.claim("replay", &shared_key, ttl).await == Some(false) {
        return Err(replayed());
    }
    let seen = hook.seen.clone();
    let claim_id = id.clone();
    let claimed = tokio::task::spawn_blocking(move || seen.claim(&claim_id, expires_at, now_s()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match claimed {
        Ok(()) => {}
        Err(ClaimError::Replay) => return Err(replayed()),
        Err(e @ ClaimError::Io { .. }) => {
            tracing::error!(source = %hook.name, error = %e, "cannot record a webhook id");
            state.shared.release("replay", &shared_key).await;
            state.reject("wal_unavailable", events.len());
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "replay_state_unavailable",
                "the gateway cannot record the webhook id for replay protection right now; retry later",
            )
            .retry_after(1));
        }
    }
    match crate::events::submit(state, events, "webhook").await {
        Ok(n) => Ok(n),
        Err(refused) => {
            state.shared.release("replay", &shared_key).await;
            let seen = hook.seen.clone();
            let _ = tokio::task::spawn_blocking(move || seen.release(&id)).await;
            Err(submit_error(state, refused))
        }
    }
}

/// True when the top-level object has a `type` member: then it is one event, even if it has
/// an `events` field of its own.
fn bytes_has_type(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        t: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.t.is_some())
}
