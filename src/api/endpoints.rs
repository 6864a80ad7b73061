//! `GET /v1/endpoints/{tenant}/{endpoint}`: what the gateway holds about one endpoint.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thoth_ingest::ApiError;

use super::{require_admin, ApiState, Client};

/// `GET /v1/endpoints/{tenant}/{endpoint}`: the context and check-in health held for one
/// endpoint.
pub(super) async fn endpoint(
    State(s): State<Arc<ApiState>>,
    Path((tenant, endpoint)): Path<(String, String)>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    match s.enricher.describe(&tenant, &endpoint) {
        Some(v) => Json(v).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            format!("neither the MDM data nor any check-in knows endpoint {endpoint:?} of tenant {tenant:?}"),
        )
        .into_response(),
    }
}
