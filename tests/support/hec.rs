//! A Splunk HTTP Event Collector emulator that enforces the wire rules of Splunk's HEC
//! documentation (REST endpoints, event format, troubleshooting codes) and
//! injects faults on command.
//!
//! Enforced as Splunk does (with its status and code): the path, `Authorization: Splunk
//! <token>` (2, 3, 4; 1 when disabled), the channel header when acknowledgements are on (10),
//! `Content-Encoding` (gzip or none; 415 otherwise), `max_content_length` (413), concatenated
//! JSON objects (6 with `invalid-event-number`), `event` present (12) and not blank (13) or
//! null (6), flat string `fields` (15), the allowed index (7). Recorded as violations (the
//! gateway's documented envelope, runbooks/splunk.md, rather than Splunk's): `time` as epoch seconds with at most 3
//! decimals, `source`, `sourcetype = thoth:<type>`, `host`, the `fields` keys, gzip on the wire.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::server::Server;

/// A fault the next event request gets instead of (or before) normal handling.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and HEC code; nothing is indexed.
    Status {
        http: u16,
        code: i64,
        text: &'static str,
        retry_after: Option<u64>,
    },
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Drop the connection without an answer.
    Reset,
}

impl Fault {
    pub fn busy(retry_after: Option<u64>) -> Fault {
        Fault::Status {
            http: 503,
            code: 9,
            text: "Server is busy",
            retry_after,
        }
    }
}

/// One request to `/services/collector/event`.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub at: Instant,
    pub status: u16,
    pub gzip: bool,
    pub events: usize,
    pub retry_after: Option<u64>,
}

#[derive(Default)]
pub struct HecState {
    pub token: String,
    pub disabled: bool,
    pub allowed_indexes: Vec<String>,
    pub max_content_length: usize,
    pub faults: VecDeque<Fault>,
    /// Envelopes indexed, in order.
    pub indexed: Vec<Value>,
    pub requests: Vec<RequestLog>,
    pub violations: Vec<String>,
    /// Events whose `event.poison == true` are refused as invalid data while this is on.
    pub reject_poison: bool,
    pub acks_enabled: bool,
    /// The next this-many requests are indexed but never acknowledged.
    pub withhold_acks: usize,
    /// channel → (next ack id, acknowledged ids not yet queried)
    channels: HashMap<String, (u64, HashMap<u64, bool>)>,
}

/// A running emulator; stop it to get "connection refused", restart it on the same port.
pub struct Hec {
    pub state: Arc<Mutex<HecState>>,
    server: Server,
}

fn reply(status: u16, code: i64, text: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({"text": text, "code": code}).to_string(),
    )
        .into_response()
}

impl Hec {
    pub fn start(token: &str) -> Hec {
        Hec::start_with(token, None)
    }

    /// A HEC emulator serving HTTPS with this TLS configuration.
    pub fn start_with(token: &str, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Hec {
        let state = Arc::new(Mutex::new(HecState {
            token: token.to_string(),
            allowed_indexes: vec!["thoth".into(), "main".into()],
            max_content_length: 838_860_800,
            ..HecState::default()
        }));
        let app = Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector/ack", post(ack))
            .route(
                "/services/collector/health",
                get(|| async { reply(200, 17, "HEC is healthy") }),
            )
            .fallback(|| async {
                reply(404, 404, "The requested URL was not found on this server.")
            })
            .with_state(state.clone());
        Hec {
            state,
            server: Server::start_with(app, tls),
        }
    }

    /// Stops listening and closes every connection: the gateway now sees connection errors.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.server.restart();
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut HecState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn indexed(&self) -> Vec<Value> {
        self.with(|s| s.indexed.clone())
    }

    /// `event.event_id` of every indexed envelope.
    pub fn indexed_ids(&self) -> Vec<String> {
        self.with(|s| {
            s.indexed
                .iter()
                .map(|e| {
                    e["event"]["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.with(|s| s.requests.clone())
    }

    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.with(|s| s.faults.extend(faults));
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_auth(state: &HecState, headers: &HeaderMap) -> Option<Response> {
    let Some(auth) = header(headers, "authorization") else {
        return Some(reply(401, 2, "Token is required"));
    };
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return Some(reply(401, 3, "Invalid authorization"));
    };
    if token != state.token {
        return Some(reply(403, 4, "Invalid token"));
    }
    if state.disabled {
        return Some(reply(403, 1, "Token disabled"));
    }
    None
}

async fn event(
    State(state): State<Arc<Mutex<HecState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = state.lock().unwrap().faults.pop_front();
    let gzip = header(&headers, "content-encoding") == Some("gzip");
    let log = |status: u16, events: usize, retry_after: Option<u64>| {
        state.lock().unwrap().requests.push(RequestLog {
            at: Instant::now(),
            status,
            gzip,
            events,
            retry_after,
        });
    };
    match fault {
        Some(Fault::Status {
            http,
            code,
            text,
            retry_after,
        }) => {
            log(http, 0, retry_after);
            let mut resp = reply(http, code, text);
            if let Some(s) = retry_after {
                resp.headers_mut().insert("retry-after", s.into());
            }
            return resp;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Reset) => {
            log(0, 0, None);
            // Ends this connection's task: the client sees the connection close unanswered.
            panic!("HEC emulator: injected connection reset");
        }
        None => {}
    }
    let mut s = state.lock().unwrap();
    let (status, events, resp) = handle_event(&mut s, &headers, &body, gzip);
    s.requests.push(RequestLog {
        at: Instant::now(),
        status,
        gzip,
        events,
        retry_after: None,
    });
    resp
}

fn handle_event(
    s: &mut HecState,
    headers: &HeaderMap,
    body: &[u8],
    gzip: bool,
) -> (u16, usize, Response) {
    if let Some(r) = check_auth(s, headers) {
        return (r.status().as_u16(), 0, r);
    }
    let channel = header(headers, "x-splunk-request-channel").map(str::to_string);
    if s.acks_enabled && channel.is_none() {
        return (400, 0, reply(400, 10, "Data channel is missing"));
    }
    let body = match header(headers, "content-encoding") {
        None => {
            s.violations
                .push("a request without Content-Encoding: gzip".into());
            body.to_vec()
        }
        Some("gzip") => {
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .is_err()
            {
                return (400, 0, reply(400, 6, "Invalid data format"));
            }
            out
        }
        Some(_) => return (415, 0, reply(415, 415, "Unsupported Media Type")),
    };
    let _ = gzip;
    if body.len() > s.max_content_length {
        return (413, 0, reply(413, 413, "Content too large"));
    }
    let mut envelopes = Vec::new();
    let mut syntax_error_at = None;
    for (i, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        match item {
            Ok(v) => envelopes.push(v),
            Err(_) => {
                syntax_error_at = Some(i);
                break;
            }
        }
    }
    if envelopes.is_empty() && syntax_error_at.is_none() {
        return (400, 0, reply(400, 5, "No data"));
    }
    // Validate in order; HEC indexes what comes before the first invalid event.
    let mut invalid: Option<(usize, u16, i64, &'static str)> =
        syntax_error_at.map(|i| (i, 400, 6, "Invalid data format"));
    for (i, env) in envelopes.iter().enumerate() {
        if invalid.is_some_and(|(at, ..)| at <= i) {
            break;
        }
        if let Some((code, text)) = envelope_error(s, env) {
            invalid = Some((i, 400, code, text));
            break;
        }
        check_contract(s, env);
    }
    if let Some((_, _, 7, text)) = invalid {
        return (400, 0, reply(400, 7, text));
    }
    let good = invalid.map_or(envelopes.len(), |(at, ..)| at);
    s.indexed.extend(envelopes.into_iter().take(good));
    if let Some((at, http, code, text)) = invalid {
        let body = json!({"text": text, "code": code, "invalid-event-number": at}).to_string();
        return (
            http,
            good,
            (
                StatusCode::from_u16(http).unwrap(),
                [("content-type", "application/json")],
                body,
            )
                .into_response(),
        );
    }
    let mut answer = json!({"text": "Success", "code": 0});
    if s.acks_enabled {
        let withhold = if s.withhold_acks > 0 {
            s.withhold_acks -= 1;
            true
        } else {
            false
        };
        let (next, acks) = s.channels.entry(channel.unwrap()).or_default();
        let id = *next;
        *next += 1;
        if !withhold {
            acks.insert(id, true);
        }
        answer["ackId"] = id.into();
    }
    (
        200,
        good,
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response(),
    )
}

/// What Splunk itself refuses in an envelope.
fn envelope_error(s: &HecState, env: &Value) -> Option<(i64, &'static str)> {
    let Some(obj) = env.as_object() else {
        return Some((6, "Invalid data format"));
    };
    match obj.get("event") {
        None => return Some((12, "Event field is required")),
        Some(Value::String(t)) if t.trim().is_empty() => {
            return Some((13, "Event field cannot be blank"))
        }
        Some(Value::Null) | Some(Value::Bool(false)) => return Some((6, "Invalid data format")),
        _ => {}
    }
    if let Some(fields) = obj.get("fields") {
        let flat = fields.as_object().is_some_and(|f| {
            f.values().all(|v| {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            })
        });
        if !flat {
            return Some((15, "Error in handling indexed fields"));
        }
    }
    if let Some(index) = obj.get("index").and_then(Value::as_str) {
        if !s.allowed_indexes.iter().any(|i| i == index) {
            return Some((7, "Incorrect index"));
        }
    }
    if s.reject_poison && obj["event"]["poison"] == true {
        return Some((6, "Invalid data format"));
    }
    None
}

/// The gateway's documented envelope, which Splunk would accept in other shapes too.
fn check_contract(s: &mut HecState, env: &Value) {
    let event = &env["event"];
    let id = event["event_id"].as_str().unwrap_or("?").to_string();
    let mut bad = |what: String| s.violations.push(format!("{id}: {what}"));
    match env["time"].as_f64() {
        Some(t) if ((t * 1000.0).round() - t * 1000.0).abs() < 1e-3 => {}
        _ => bad(format!(
            "time {} is not epoch seconds with milliseconds",
            env["time"]
        )),
    }
    if env["source"] != "thoth-gateway" {
        bad(format!("source {}", env["source"]));
    }
    let want_sourcetype = format!("thoth:{}", event["type"].as_str().unwrap_or(""));
    if env["sourcetype"] != want_sourcetype.as_str() {
        bad(format!(
            "sourcetype {} instead of {want_sourcetype}",
            env["sourcetype"]
        ));
    }
    let host = event["hostname"]
        .as_str()
        .or(event["context"]["endpoint"]["hostname"].as_str());
    if host.is_some() && env["host"].as_str() != host {
        bad(format!("host {} instead of {host:?}", env["host"]));
    }
    let allowed = ["tenant_id", "fleet_id", "endpoint_id", "risk", "decision"];
    if let Some(fields) = env["fields"].as_object() {
        for k in fields.keys() {
            if !allowed.contains(&k.as_str()) {
                bad(format!("unexpected field {k}"));
            }
        }
        if fields.get("tenant_id") != event.get("tenant_id") {
            bad("fields.tenant_id differs from the event's".into());
        }
    } else {
        bad("no fields".into());
    }
}

#[derive(serde::Deserialize)]
struct AckQuery {
    channel: Option<String>,
}

async fn ack(
    State(state): State<Arc<Mutex<HecState>>>,
    Query(q): Query<AckQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = check_auth(&s, &headers) {
        return r;
    }
    if !s.acks_enabled {
        return reply(400, 14, "ACK is disabled");
    }
    let Some(channel) = q
        .channel
        .or_else(|| header(&headers, "x-splunk-request-channel").map(str::to_string))
    else {
        return reply(400, 10, "Data channel is missing");
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, 6, "Invalid data format");
    };
    let ids: Vec<u64> = req["acks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let (_, acks) = s.channels.entry(channel).or_default();
    let mut out = serde_json::Map::new();
    for id in ids {
        // An id answered true is forgotten.
        let done = acks.remove(&id).unwrap_or(false);
        out.insert(id.to_string(), done.into());
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"acks": out}).to_string(),
    )
        .into_response()
}
