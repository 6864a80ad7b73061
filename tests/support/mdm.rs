//! Jamf Pro API and Microsoft Graph (Intune) emulators (Jamf Pro API and Microsoft Graph references): OAuth client
//! credentials, paging (`page` / `page-size`; `@odata.nextLink`), tokens that expire, 429 with
//! `Retry-After`, and a count of concurrent requests (Jamf asks for at most 5).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::server::Server;

pub const JAMF_CLIENT_ID: &str = "b1a5e0c4-jamf-client";
pub const JAMF_CLIENT_SECRET: &str = "jamf-secret-value";
pub const GRAPH_TENANT: &str = "72f988bf-0000-0000-0000-2d7cd011db47";
pub const GRAPH_CLIENT_ID: &str = "3f6d2c1a-0000-4000-8000-0000000000aa";
pub const GRAPH_CLIENT_SECRET: &str = "graph-secret-value";

#[derive(Default)]
pub struct MdmState {
    pub computers: Vec<Value>,
    pub departments: Vec<Value>,
    pub devices: Vec<Value>,
    pub graph_page_size: usize,
    /// Valid tokens and how many more requests each may make (then it "expires": 401).
    pub tokens: HashMap<String, usize>,
    pub token_uses: usize,
    pub tokens_issued: usize,
    /// Statuses (with Retry-After) the next data requests get.
    pub faults: VecDeque<(u16, Option<u64>)>,
    pub requests: usize,
    pub violations: Vec<String>,
    pub page_delay: Duration,
}

pub struct MdmEmulator {
    pub state: Arc<Mutex<MdmState>>,
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    server: Server,
}

type Shared = (Arc<Mutex<MdmState>>, Arc<AtomicUsize>, Arc<AtomicUsize>);

/// A Jamf computer of the generated inventory.
pub fn computer(i: usize) -> Value {
    json!({
        "id": (1000 + i).to_string(),
        "udid": format!("UDID-{i}"),
        "general": {"name": format!("mac-{i:05}"), "lastContactTime": "2026-11-28T09:55:00Z",
                    "site": {"id": "1", "name": "Berlin"}, "remoteManagement": {"managed": true}},
        "hardware": {"make": "Apple", "model": "MacBook Pro", "serialNumber": format!("C02SN{i:07}")},
        "userAndLocation": {"username": format!("user{i}"), "email": format!("user{i}@acme.com"),
                            "departmentId": if i.is_multiple_of(2) { "3" } else { "5" }},
        "operatingSystem": {"name": "macOS", "version": "15.1"},
        "extensionAttributes": [{"definitionId": "17", "name": "Thoth Endpoint ID", "values": [format!("ep-{i}")]}]
    })
}

/// An Intune managed device of the generated inventory.
pub fn device(i: usize) -> Value {
    json!({
        "id": format!("dev-{i:06}"), "deviceName": format!("GLX-{i:05}"), "serialNumber": format!("GSN{i:07}"),
        "operatingSystem": "Windows", "osVersion": "10.0.26100", "userPrincipalName": format!("u{i}@globex.example"),
        "deviceCategoryDisplayName": "Laptops", "model": "ThinkPad", "managementAgent": "mdm",
        "complianceState": "compliant", "lastSyncDateTime": "2026-11-28T09:50:31Z"
    })
}

impl MdmEmulator {
    pub fn start(computers: usize, devices: usize) -> MdmEmulator {
        let state = Arc::new(Mutex::new(MdmState {
            computers: (0..computers).map(computer).collect(),
            departments: vec![
                json!({"id": "3", "name": "Engineering"}),
                json!({"id": "5", "name": "Sales"}),
            ],
            devices: (0..devices).map(device).collect(),
            graph_page_size: 500,
            token_uses: 1000,
            ..MdmState::default()
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let shared: Shared = (state.clone(), in_flight.clone(), max_in_flight.clone());
        let app = Router::new()
            .route("/api/oauth/token", post(jamf_token))
            .route("/api/v1/departments", get(jamf_departments))
            .route("/api/v3/computers-inventory", get(jamf_inventory))
            .route("/{tenant}/oauth2/v2.0/token", post(graph_token))
            .route("/v1.0/deviceManagement/managedDevices", get(graph_devices))
            .with_state(shared);
        MdmEmulator {
            state,
            in_flight,
            max_in_flight,
            server: Server::start(app),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut MdmState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn issue_token(s: &mut MdmState) -> Response {
    s.tokens_issued += 1;
    let token = format!("tok-{}", s.tokens_issued);
    s.tokens.insert(token.clone(), s.token_uses);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 599}).to_string(),
    )
        .into_response()
}

async fn jamf_token(State((state, ..)): State<Shared>, body: Bytes) -> Response {
    let f = form(&body);
    let mut s = state.lock().unwrap();
    if f.get("grant_type").map(String::as_str) != Some("client_credentials")
        || f.get("client_id").map(String::as_str) != Some(JAMF_CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(JAMF_CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client"}).to_string(),
        )
            .into_response();
    }
    issue_token(&mut s)
}

async fn graph_token(
    State((state, ..)): State<Shared>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let mut s = state.lock().unwrap();
    if tenant != GRAPH_TENANT
        || f.get("client_id").map(String::as_str) != Some(GRAPH_CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(GRAPH_CLIENT_SECRET)
    {
        return (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}).to_string()).into_response();
    }
    if f.get("scope").map(String::as_str) != Some("https://graph.microsoft.com/.default") {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_scope"}).to_string(),
        )
            .into_response();
    }
    issue_token(&mut s)
}

/// Checks the bearer token (spending one use) and injected faults; `Err` is the answer.
#[allow(clippy::result_large_err)] // a test emulator: clarity over size
fn admit(s: &mut MdmState, headers: &HeaderMap) -> Result<(), Response> {
    s.requests += 1;
    if let Some((status, retry_after)) = s.faults.pop_front() {
        let mut r = (
            StatusCode::from_u16(status).unwrap(),
            json!({"error": {"code": "TooManyRequests"}}).to_string(),
        )
            .into_response();
        if let Some(ra) = retry_after {
            r.headers_mut().insert("retry-after", ra.into());
        }
        return Err(r);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    match s.tokens.get_mut(&token) {
        Some(uses) if *uses > 0 => {
            *uses -= 1;
            Ok(())
        }
        _ => Err((
            StatusCode::UNAUTHORIZED,
            json!({"httpStatus": 401, "errors": [{"code": "INVALID_TOKEN"}]}).to_string(),
        )
            .into_response()),
    }
}

async fn jamf_departments(State((state, ..)): State<Shared>, headers: HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    if let Err(r) = admit(&mut s, &headers) {
        return r;
    }
    let body = json!({"totalCount": s.departments.len(), "results": s.departments});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn jamf_inventory(
    State((state, in_flight, max_in_flight)): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = state.lock().unwrap().page_delay;
    tokio::time::sleep(delay).await;
    let resp = {
        let mut s = state.lock().unwrap();
        match admit(&mut s, &headers) {
            Err(r) => r,
            Ok(()) => {
                let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let sections: Vec<&str> = q
                    .iter()
                    .filter(|(n, _)| n == "section")
                    .map(|(_, v)| v.as_str())
                    .collect();
                for needed in [
                    "GENERAL",
                    "HARDWARE",
                    "USER_AND_LOCATION",
                    "OPERATING_SYSTEM",
                ] {
                    if !sections.contains(&needed) {
                        s.violations.push(format!("section {needed} not requested"));
                    }
                }
                let page: usize = get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let size: usize = get("page-size").and_then(|p| p.parse().ok()).unwrap_or(100);
                let results: Vec<Value> = s
                    .computers
                    .iter()
                    .skip(page * size)
                    .take(size)
                    .cloned()
                    .collect();
                let body = json!({"totalCount": s.computers.len(), "results": results});
                (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        }
    };
    in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

async fn graph_devices(
    State((state, ..)): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Err(r) = admit(&mut s, &headers) {
        return r;
    }
    if !q
        .get("$select")
        .is_some_and(|v| v.contains("serialNumber") && v.contains("deviceName"))
    {
        s.violations
            .push("managedDevices without a $select of the needed properties".into());
    }
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let size = s.graph_page_size;
    let page: Vec<Value> = s.devices.iter().skip(skip).take(size).cloned().collect();
    let mut body = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices", "value": page});
    if skip + size < s.devices.len() {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let select = q.get("$select").cloned().unwrap_or_default();
        body["@odata.nextLink"] = format!(
            "http://{host}/v1.0/deviceManagement/managedDevices?$select={select}&$skiptoken={}",
            skip + size
        )
        .into();
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
