//! `PUT /v1/mdm/{provider}`: snapshot pushes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use thoth_config::MdmSource;
use thoth_enrich::LoaderCommand;
use thoth_ingest::ApiError;

use super::{require_admin, ApiState, Client};

/// `PUT /v1/mdm/{provider}`: a snapshot in the provider's native format, validated, stored as
/// its current snapshot and in use when this answers. The admin check and the provider lookup
/// come first; only then is the body read, streamed to a file beside the provider's snapshot
/// (at most `mdm.max_push_bytes`, within the body timeout) and parsed from there as a stream.
pub(super) async fn push_snapshot(
    State(s): State<Arc<ApiState>>,
    Path(provider): Path<String>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = require_admin(&s, &headers, &client) {
        return e.into_response();
    }
    let Some(p) = s
        .live
        .load()
        .providers
        .iter()
        .find(|p| p.name == provider)
        .cloned()
    else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no [[mdm.providers]] named {provider:?}"),
        )
        .into_response();
    };
    if matches!(p.source, MdmSource::File) {
        return ApiError::new(
            StatusCode::CONFLICT,
            "file_provider",
            format!(
                "provider {provider:?} reads its snapshot from {}; update that file instead",
                p.file.display()
            ),
        )
        .into_response();
    }
    let staged = match thoth_enrich::staging_path(&p) {
        Ok(path) => path,
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                .into_response()
        }
    };
    if let Err(e) = thoth_ingest::read_body_to_file(
        &headers,
        body,
        s.max_push_bytes,
        "mdm.max_push_bytes",
        s.body_timeout,
        &staged,
    )
    .await
    {
        return e.into_response();
    }
    let stored = {
        let p = p.clone();
        tokio::task::spawn_blocking(move || thoth_enrich::store_snapshot_file(&p, &staged)).await
    };
    match stored {
        Ok(Ok(counts)) => {
            s.mdm_status.success(&provider, counts.clone());
            let (ack, done) = tokio::sync::oneshot::channel();
            if s.mdm_reload.send(LoaderCommand::Refresh(ack)).await.is_ok() {
                let _ = done.await;
            }
            Json(serde_json::json!({
                "provider": provider, "kind": p.kind.as_str(),
                "imported": counts.imported, "upserted": counts.upserted,
                "unchanged": counts.unchanged, "removed": counts.removed, "errors": [],
            }))
            .into_response()
        }
        Ok(Err(e)) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_snapshot", e.to_string())
            .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}
