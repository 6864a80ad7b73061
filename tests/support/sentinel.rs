//! An Entra ID token endpoint and Azure Monitor Logs Ingestion endpoint emulator
//! (Microsoft's Logs Ingestion API and Entra ID client-credentials docs) on one server: the gateway's `authority` and `endpoint` both point at it.
//!
//! Token: `POST /{tenant}/oauth2/v2.0/token` with the client-credentials form; a wrong secret
//! gets `401 invalid_client` (AADSTS7000215), a wrong scope `400 invalid_scope`; tokens expire
//! after `token_lifetime`. Ingestion: `POST /dataCollectionRules/{dcr}/streams/{stream}`
//! checks `api-version=2023-01-01`, the bearer token (401 when unknown or expired), the content
//! type and encoding, 1 MB per call compressed and uncompressed (413), a JSON array of records
//! with exactly the declared columns and a `TimeGenerated` datetime (400 otherwise), and
//! answers 204. Faults (429 / 503 with `Retry-After`, 401, 413) are injected on command.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::server::Server;

pub const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";
pub const STREAM: &str = "Custom-ThothEvents_CL";
pub const AZURE_TENANT: &str = "72f988bf-0000-0000-0000-2d7cd011db47";
pub const CLIENT_ID: &str = "3f6d2c1a-0000-4000-8000-00000000c11e";
pub const MAX_CALL_BYTES: usize = 1024 * 1024;

/// The stream declaration of the runbook's DCR: column → type.
pub const COLUMNS: [(&str, &str); 10] = [
    ("TimeGenerated", "datetime"),
    ("TenantId", "string"),
    ("FleetId", "string"),
    ("EndpointId", "string"),
    ("Hostname", "string"),
    ("Type", "string"),
    ("Risk", "string"),
    ("Decision", "string"),
    ("EventId", "string"),
    ("Event", "dynamic"),
];

#[derive(Debug, Clone)]
pub struct CallLog {
    pub at: Instant,
    pub status: u16,
    pub records: usize,
    pub uncompressed_bytes: usize,
    pub retry_after: Option<u64>,
}

pub struct SentinelState {
    pub client_secret: String,
    pub token_lifetime: Duration,
    /// token → expiry
    pub tokens: HashMap<String, Instant>,
    pub tokens_issued: usize,
    pub faults: VecDeque<(u16, Option<u64>)>,
    pub records: Vec<Value>,
    pub calls: Vec<CallLog>,
    pub violations: Vec<String>,
}

pub struct SentinelEmulator {
    pub state: Arc<Mutex<SentinelState>>,
    server: Server,
}

fn error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

impl SentinelEmulator {
    pub fn start(client_secret: &str, token_lifetime: Duration) -> SentinelEmulator {
        let state = Arc::new(Mutex::new(SentinelState {
            client_secret: client_secret.into(),
            token_lifetime,
            tokens: HashMap::new(),
            tokens_issued: 0,
            faults: VecDeque::new(),
            records: Vec::new(),
            calls: Vec::new(),
            violations: Vec::new(),
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/dataCollectionRules/{dcr}/streams/{stream}", post(ingest))
            .with_state(state.clone());
        SentinelEmulator {
            state,
            server: Server::start(app),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut SentinelState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn record_ids(&self) -> Vec<String> {
        self.with(|s| {
            s.records
                .iter()
                .map(|r| r["EventId"].as_str().unwrap_or_default().to_string())
                .collect()
        })
    }
}

async fn token(
    State(state): State<Arc<Mutex<SentinelState>>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let aad = |status: u16, error: &str, description: &str| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            json!({"error": error, "error_description": description, "error_codes": [0]})
                .to_string(),
        )
            .into_response()
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return aad(
            400,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let form: HashMap<String, String> = form_urlencoded(&body);
    if tenant != AZURE_TENANT {
        return aad(
            400,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad(
            400,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if form.get("scope").map(String::as_str) != Some("https://monitor.azure.com//.default") {
        return aad(
            400,
            "invalid_scope",
            "AADSTS70011: The provided request must include a 'scope' input parameter.",
        );
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return aad(
            400,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    if form.get("client_secret") != Some(&s.client_secret) {
        return aad(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 0000");
    }
    s.tokens_issued += 1;
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.tok-{}",
        s.tokens_issued
    );
    let lifetime = s.token_lifetime;
    s.tokens.insert(token.clone(), Instant::now() + lifetime);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": token}).to_string(),
    )
        .into_response()
}

fn form_urlencoded(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[derive(serde::Deserialize)]
struct IngestQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

async fn ingest(
    State(state): State<Arc<Mutex<SentinelState>>>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let (status, records, size, retry_after, resp) =
        handle(&mut s, &dcr, &stream, q, &headers, &body);
    s.calls.push(CallLog {
        at: Instant::now(),
        status,
        records,
        uncompressed_bytes: size,
        retry_after,
    });
    resp
}

fn handle(
    s: &mut SentinelState,
    dcr: &str,
    stream: &str,
    q: IngestQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, usize, usize, Option<u64>, Response) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some((status, retry_after)) = s.faults.pop_front() {
        let mut resp = error(status, "Injected", "injected failure");
        if let Some(ra) = retry_after {
            resp.headers_mut().insert("retry-after", ra.into());
        }
        return (status, 0, 0, retry_after, resp);
    }
    if dcr != DCR || stream != STREAM {
        return (
            404,
            0,
            0,
            None,
            error(404, "NotFound", "Data collection rule or stream not found."),
        );
    }
    if q.api_version.as_deref() != Some("2023-01-01") {
        return (
            400,
            0,
            0,
            None,
            error(
                400,
                "InvalidApiVersion",
                "The api-version is missing or not supported.",
            ),
        );
    }
    let valid = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|exp| Instant::now() < *exp);
    if !valid {
        return (
            401,
            0,
            0,
            None,
            error(
                401,
                "InvalidToken",
                "The provided access token is missing, invalid or expired.",
            ),
        );
    }
    if header("content-type").map(|c| c.split(';').next().unwrap().trim())
        != Some("application/json")
    {
        return (
            415,
            0,
            0,
            None,
            error(
                415,
                "UnsupportedMediaType",
                "Content-Type must be application/json.",
            ),
        );
    }
    if body.len() > MAX_CALL_BYTES {
        return (
            413,
            0,
            body.len(),
            None,
            error(
                413,
                "ContentLengthLimitExceeded",
                "The message is too large. The maximum message size is currently 1 MB per call.",
            ),
        );
    }
    let data = match header("content-encoding") {
        Some("gzip") => {
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .is_err()
            {
                return (
                    400,
                    0,
                    0,
                    None,
                    error(400, "InvalidContentEncoding", "The body is not valid gzip."),
                );
            }
            out
        }
        None => {
            s.violations.push("a call without gzip".into());
            body.to_vec()
        }
        Some(other) => {
            return (
                400,
                0,
                0,
                None,
                error(
                    400,
                    "InvalidContentEncoding",
                    &format!("Content-Encoding {other} is not supported."),
                ),
            )
        }
    };
    if data.len() > MAX_CALL_BYTES {
        return (
            413,
            0,
            data.len(),
            None,
            error(
                413,
                "ContentLengthLimitExceeded",
                "The message is too large. The maximum message size is currently 1 MB per call.",
            ),
        );
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&data) else {
        return (
            400,
            0,
            data.len(),
            None,
            error(400, "InvalidPayload", "The body must be a JSON array."),
        );
    };
    for (i, item) in items.iter().enumerate() {
        if let Some(why) = record_error(item) {
            return (
                400,
                0,
                data.len(),
                None,
                error(400, "InvalidPayload", &format!("record {i}: {why}")),
            );
        }
    }
    let n = items.len();
    s.records.extend(items);
    (
        204,
        n,
        data.len(),
        None,
        StatusCode::NO_CONTENT.into_response(),
    )
}

/// Checks a record against the stream declaration.
fn record_error(item: &Value) -> Option<String> {
    let Some(obj) = item.as_object() else {
        return Some("not an object".into());
    };
    for key in obj.keys() {
        if !COLUMNS.iter().any(|(c, _)| c == key) {
            return Some(format!("column {key} is not declared in the stream"));
        }
    }
    for (column, kind) in COLUMNS {
        let Some(v) = obj.get(column) else { continue };
        let ok = match kind {
            "datetime" => v.as_str().is_some_and(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            }),
            "string" => v.is_string() || v.is_null(),
            _ => v.is_object(),
        };
        if !ok {
            return Some(format!("column {column} is not a {kind}: {v}"));
        }
    }
    if !obj.contains_key("TimeGenerated") {
        return Some("TimeGenerated is required".into());
    }
    None
}
