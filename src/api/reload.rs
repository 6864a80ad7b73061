//! `POST /v1/reload`: load the config file again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thoth_ingest::ApiError;

use crate::gateway::reload::{ReloadError, ReloadRequest};

use super::{require_admin, ApiState, Client};

/// `POST /v1/reload` (admin): loads the config file again, like SIGHUP. `200` with what
/// changed; `400 invalid_config` with the same errors as `validate` (the running config stays);
/// `409` when there is no config file to reload.
pub(super) async fn reload(
    State(s): State<Arc<ApiState>>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if s.reload.send(ReloadRequest { reply }).await.is_err() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down",
        )
        .into_response();
    }
    match answer.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(ReloadError::Invalid(errors))) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "invalid_config",
                "message": "the new config is invalid; the running config is unchanged",
                "details": errors.iter().map(|e| serde_json::json!({"path": e.path, "message": e.message})).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Ok(Err(ReloadError::NoConfigFile)) => ApiError::new(
            StatusCode::CONFLICT,
            "no_config_file",
            "the gateway runs the built-in default (no --config): there is no file to reload",
        )
        .into_response(),
        Ok(Err(ReloadError::Failed(message))) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "reload_failed", message).into_response()
        }
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the gateway is shutting down").into_response(),
    }
}
