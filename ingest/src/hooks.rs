//! `POST /v1/hooks/{source}`: signed webhooks from the Thoth GovAPI (alerts, webhook tests).
//!
//! Each `[[sources.webhooks]]` verifies Standard Webhooks signatures with any of its secrets,
//! refuses timestamps outside its tolerance and `webhook-id`s already accepted within it
//! (replay), and accepts one event or `{"events":[...]}`, answering 200 only once they are
//! durable. Accepted ids are kept in `data_dir/hooks/{source}.seen` so replay protection
//! survives a restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use thoth_config::WebhookSourceConfig;
use thoth_event::{decode_batch, now_rfc3339, verify_webhook, BodyFormat, WebhookSecret};

use crate::body::read_body;
use crate::error::ApiError;
use crate::events::{batch_error, submit_error, IngestState};

/// One configured inbound webhook source.
pub struct HookSource {
    pub name: String,
    pub tenant_id: Option<String>,
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
    seen: SeenIds,
}

impl HookSource {
    /// Opens a source, loading the ids it accepted within the tolerance window.
    pub fn open(config: &WebhookSourceConfig, dir: &Path) -> std::io::Result<HookSource> {
        Ok(HookSource {
            name: config.name.clone(),
            tenant_id: config.tenant_id.clone(),
            secrets: config.secrets.clone(),
            tolerance: config.tolerance,
            seen: SeenIds::open(&dir.join(format!("{}.seen", config.name)), config.tolerance)?,
        })
    }
}

/// `webhook-id`s accepted within the tolerance window, in memory and appended to a file.
struct SeenIds {
    path: PathBuf,
    window_s: i64,
    ids: Mutex<HashMap<String, i64>>,
}

fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl SeenIds {
    fn open(path: &Path, window: Duration) -> std::io::Result<SeenIds> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let window_s = window.as_secs() as i64;
        let now = now_s();
        let mut ids = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((ts, id)) = line.split_once(' ') {
                        if let Ok(ts) = ts.parse::<i64>() {
                            if ts + window_s >= now {
                                ids.insert(id.to_string(), ts);
                            }
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Rewrite with the live entries only, so the file does not grow without end.
        let mut text = String::new();
        for (id, ts) in &ids {
            text.push_str(&format!("{ts} {id}\n"));
        }
        let tmp = path.with_extension("seen.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(SeenIds {
            path: path.to_path_buf(),
            window_s,
            ids: Mutex::new(ids),
        })
    }

    fn contains(&self, id: &str) -> bool {
        let now = now_s();
        self.ids
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|ts| ts + self.window_s >= now)
    }

    fn insert(&self, id: &str) {
        let now = now_s();
        let mut ids = self.ids.lock().unwrap();
        ids.insert(id.to_string(), now);
        if ids.len().is_multiple_of(1024) {
            ids.retain(|_, ts| *ts + self.window_s >= now);
        }
        // Ids never hold a newline: header values cannot.
        let line = format!("{now} {id}\n");
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot persist a webhook id; replay protection will not survive a restart");
        }
    }
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
    let bytes = read_body(headers, body, state.max_body_bytes, state.body_timeout)
        .await
        .inspect_err(|e| state.reject(e.code, 0))?;
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header_str("webhook-id");
    verify_webhook(
        &hook.secrets,
        id,
        header_str("webhook-timestamp"),
        header_str("webhook-signature"),
        &bytes,
        now_s(),
        hook.tolerance.as_secs(),
    )
    .map_err(|e| {
        state.reject("invalid_signature", 0);
        unauthorized(format!("webhook source {:?}: {e}", hook.name))
    })?;
    let id = id.expect("verified above");
    if hook.seen.contains(id) {
        state.reject("replayed", 0);
        return Err(unauthorized(format!(
            "webhook-id {id:?} was already accepted within the last {} s (replay)",
            hook.tolerance.as_secs()
        )));
    }

    let received_at = now_rfc3339();
    let payload: &[u8] = match serde_json::from_slice::<Wrapped>(&bytes) {
        Ok(w) if !bytes_has_type(&bytes) => w.events.get().as_bytes(),
        _ => &bytes,
    };
    let events = decode_batch(payload, BodyFormat::Json, &state.limits, &received_at)
        .map_err(|e| batch_error(state, e))?;
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
    let n = crate::events::submit(state, events, "webhook")
        .await
        .map_err(|e| submit_error(state, e))?;
    hook.seen.insert(id);
    Ok(n)
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
