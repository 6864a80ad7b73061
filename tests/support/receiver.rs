//! A webhook receiver (a SOAR / PAM endpoint) that verifies Standard Webhooks signatures with
//! its own HMAC code — not the gateway's — records deliveries, and answers with injected
//! statuses on command. `sign` is the same independent code, for signing inbound requests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::server::Server;

fn key(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret")
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, computed here independently.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn hub_sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: i64,
    /// Which configured verification secrets matched one of the signatures.
    pub verified_by: Vec<String>,
    pub hub_signature_ok: Option<bool>,
    pub headers: HeaderMap,
    pub body: Value,
    pub status: u16,
}

pub struct ReceiverState {
    /// Secrets to verify with (each is checked on its own).
    pub secrets: Vec<String>,
    pub hub_secret: Option<String>,
    pub faults: VecDeque<u16>,
    pub deliveries: Vec<Delivery>,
}

pub struct Receiver {
    pub state: Arc<Mutex<ReceiverState>>,
    server: Server,
}

impl Receiver {
    pub fn start(secrets: &[&str], hub_secret: Option<&str>) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            hub_secret: hub_secret.map(str::to_string),
            faults: VecDeque::new(),
            deliveries: Vec::new(),
        }));
        let app = Router::new()
            .route("/hooks/thoth", post(receive))
            .with_state(state.clone());
        Receiver {
            state,
            server: Server::start(app),
        }
    }

    pub fn url(&self) -> String {
        format!("{}/hooks/thoth", self.server.url())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut ReceiverState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Deliveries answered 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.with(|s| {
            s.deliveries
                .iter()
                .filter(|d| d.status < 300)
                .cloned()
                .collect()
        })
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let raw = if h("content-encoding") == "gzip" {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let (id, ts) = (
        h("webhook-id"),
        h("webhook-timestamp").parse::<i64>().unwrap_or(0),
    );
    let offered: Vec<String> = h("webhook-signature")
        .split(' ')
        .map(str::to_string)
        .collect();
    let verified_by = s
        .secrets
        .iter()
        .filter(|secret| offered.contains(&sign(secret, &id, ts, &raw)))
        .cloned()
        .collect::<Vec<_>>();
    let hub_signature_ok = s
        .hub_secret
        .as_ref()
        .map(|secret| h("x-hub-signature-256") == hub_sign(secret, &raw));
    let status = if verified_by.is_empty() {
        401
    } else {
        s.faults.pop_front().unwrap_or(200)
    };
    s.deliveries.push(Delivery {
        id,
        timestamp: ts,
        verified_by,
        hub_signature_ok,
        headers: headers.clone(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        status,
    });
    (StatusCode::from_u16(status).unwrap(), "{}").into_response()
}
