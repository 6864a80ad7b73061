//! `GET /v1/tap`: a sampled live stream of events at one stage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use thoth_ingest::ApiError;
use thoth_sinks::TapFilter;

use super::{require_admin, ApiState, Client};

/// The query of `GET /v1/tap`.
#[derive(serde::Deserialize)]
pub(super) struct TapQuery {
    /// `ingest`, `enriched` or `sink:NAME`.
    stage: Option<String>,
    tenant: Option<String>,
    /// Events per second at most (default 100, at most 1000).
    rate: Option<u32>,
}

/// How often an idle tap stream checks whether the gateway is shutting down.
const TAP_SHUTDOWN_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Events a tap shows per second unless asked otherwise.
const DEFAULT_TAP_RATE: u32 = 100;

/// `GET /v1/tap?stage=..&tenant=..&rate=..` (admin): a stream of NDJSON lines
/// `{"stage","tenant_id","event"}` until the client goes away. Sampled: at most `rate` events
/// per second, and a client that reads slowly misses events rather than slowing the pipeline.
pub(super) async fn tap(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<TapQuery>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let stage = q.stage.unwrap_or_else(|| "enriched".to_string());
    let known = match stage.strip_prefix("sink:") {
        Some(name) => s.live.load().sinks.iter().any(|(n, _)| n == name),
        None => stage == "ingest" || stage == "enriched",
    };
    if !known {
        let sinks: Vec<String> = s
            .live
            .load()
            .sinks
            .iter()
            .map(|(n, _)| format!("sink:{n}"))
            .collect();
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_stage",
            format!(
                "stage {stage:?} is not one of ingest, enriched, {}",
                sinks.join(", ")
            ),
        )
        .into_response();
    }
    let subscription = s.tap.subscribe(TapFilter {
        stage,
        tenant: q.tenant,
        rate: q.rate.unwrap_or(DEFAULT_TAP_RATE),
    });
    // The stream ends when the gateway shuts down, so an open tap never holds up the drain.
    let closing = s.shutting_down.clone();
    let stream = futures_util::stream::unfold(subscription, move |mut sub| {
        let closing = closing.clone();
        async move {
            loop {
                if closing.load(Ordering::Acquire) {
                    return None;
                }
                match tokio::time::timeout(TAP_SHUTDOWN_CHECK, sub.lines.recv()).await {
                    Ok(Some(line)) => return Some((Ok::<_, std::convert::Infallible>(line), sub)),
                    Ok(None) => return None,
                    Err(_) => continue,
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
