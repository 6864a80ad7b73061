//! An Elasticsearch / OpenSearch `_bulk` emulator (Elasticsearch's bulk API reference) that parses NDJSON
//! strictly, keeps the documents it indexed, answers per item as Elasticsearch does (201
//! created, 409 on `create` of an existing `_id`), and fails chosen items or whole requests.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::server::Server;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch8,
    OpenSearch2,
}

/// One `_bulk` request as received.
#[derive(Debug, Clone)]
pub struct BulkLog {
    pub status: u16,
    pub ids: Vec<String>,
    pub gzip: bool,
}

pub struct EsState {
    pub flavor: Flavor,
    pub api_key: Option<String>,
    /// (index, _id) → document.
    pub docs: HashMap<(String, String), Value>,
    /// Per `_id`: the statuses (and error types) its next attempts get.
    pub item_faults: HashMap<String, VecDeque<(u16, &'static str)>>,
    /// Whole-request failures: (status, Retry-After).
    pub request_faults: VecDeque<(u16, Option<u64>)>,
    pub requests: Vec<BulkLog>,
    pub violations: Vec<String>,
}

pub struct Elastic {
    pub state: Arc<Mutex<EsState>>,
    server: Server,
}

fn es_error(status: u16, kind: &str, reason: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({"error": {"type": kind, "reason": reason}, "status": status}).to_string(),
    )
        .into_response()
}

impl Elastic {
    pub fn start(flavor: Flavor, api_key: Option<&str>) -> Elastic {
        let state = Arc::new(Mutex::new(EsState {
            flavor,
            api_key: api_key.map(str::to_string),
            docs: HashMap::new(),
            item_faults: HashMap::new(),
            request_faults: VecDeque::new(),
            requests: Vec::new(),
            violations: Vec::new(),
        }));
        let app = Router::new()
            .route("/_bulk", post(bulk))
            .route("/", get(info))
            .with_state(state.clone());
        Elastic {
            state,
            server: Server::start(app),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut EsState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn doc_count(&self) -> usize {
        self.with(|s| s.docs.len())
    }

    /// The document with this `_id` or event id (`thoth.event_id`), in whatever index.
    pub fn doc(&self, id: &str) -> Option<Value> {
        self.with(|s| {
            s.docs
                .iter()
                .find(|((_, i), d)| i == id || d["thoth"]["event_id"] == id)
                .map(|(_, d)| d.clone())
        })
    }

    pub fn requests(&self) -> Vec<BulkLog> {
        self.with(|s| s.requests.clone())
    }

    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }
}

async fn info(State(state): State<Arc<Mutex<EsState>>>) -> Response {
    let body = match state.lock().unwrap().flavor {
        Flavor::Elasticsearch8 => {
            json!({"name":"es01","cluster_name":"thoth","version":{"number":"8.15.3","build_flavor":"default"},"tagline":"You Know, for Search"})
        }
        Flavor::OpenSearch2 => {
            json!({"name":"os01","cluster_name":"thoth","version":{"distribution":"opensearch","number":"2.17.1"},"tagline":"The OpenSearch Project: https://opensearch.org/"})
        }
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn bulk(
    State(state): State<Arc<Mutex<EsState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let gzip = header("content-encoding") == Some("gzip");
    if let Some((status, retry_after)) = s.request_faults.pop_front() {
        s.requests.push(BulkLog {
            status,
            ids: Vec::new(),
            gzip,
        });
        let mut resp = es_error(
            status,
            "es_rejected_execution_exception",
            "rejected execution (injected)",
        );
        if let Some(ra) = retry_after {
            resp.headers_mut().insert("retry-after", ra.into());
        }
        return resp;
    }
    if let Some(key) = &s.api_key {
        if header("authorization") != Some(format!("ApiKey {key}").as_str()) {
            return es_error(
                401,
                "security_exception",
                "unable to authenticate with provided credentials",
            );
        }
    }
    match header("content-type") {
        Some("application/x-ndjson") => {}
        Some("application/json") => s
            .violations
            .push("Content-Type application/json for _bulk".into()),
        other => {
            return es_error(
                406,
                "media_type_header_exception",
                &format!("Content-Type header [{other:?}] is not supported"),
            )
        }
    }
    let body = match header("content-encoding") {
        Some("gzip") => {
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                return es_error(400, "parse_exception", "cannot decompress the body");
            }
            out
        }
        None => {
            s.violations.push("a _bulk request without gzip".into());
            body.to_vec()
        }
        Some(other) => {
            return es_error(
                400,
                "illegal_argument_exception",
                &format!("unsupported Content-Encoding {other}"),
            )
        }
    };
    if !body.ends_with(b"\n") {
        return es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return es_error(400, "parse_exception", "the body is not UTF-8"),
    };
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    if !lines.len().is_multiple_of(2) {
        return es_error(
            400,
            "illegal_argument_exception",
            "Validation Failed: an action line without its source line",
        );
    }
    let mut items = Vec::new();
    let mut ids = Vec::new();
    let mut any_error = false;
    let opensearch = s.flavor == Flavor::OpenSearch2;
    for pair in lines.chunks(2) {
        let (Ok(action), Ok(doc)) = (
            serde_json::from_str::<Value>(pair[0]),
            serde_json::from_str::<Value>(pair[1]),
        ) else {
            return es_error(
                400,
                "x_content_parse_exception",
                "malformed action or source line",
            );
        };
        let Some((op, meta)) = action
            .as_object()
            .and_then(|o| (o.len() == 1).then(|| o.iter().next().unwrap()))
        else {
            return es_error(
                400,
                "illegal_argument_exception",
                "Malformed action/metadata line",
            );
        };
        if !["create", "index"].contains(&op.as_str()) {
            s.violations.push(format!("unexpected action {op}"));
        }
        let (Some(index), Some(id)) = (meta["_index"].as_str(), meta["_id"].as_str()) else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            );
        };
        if !doc.is_object() {
            return es_error(
                400,
                "mapper_parsing_exception",
                "failed to parse: source is not an object",
            );
        }
        ids.push(id.to_string());
        let mut result = json!({"_index": index, "_id": id});
        if opensearch {
            result["_type"] = "_doc".into();
        }
        let fault = s.item_faults.get_mut(id).and_then(VecDeque::pop_front);
        let key = (index.to_string(), id.to_string());
        let (status, error) = if let Some((status, kind)) = fault {
            (
                status,
                Some((kind.to_string(), format!("{kind} injected for [{id}]"))),
            )
        } else if index.starts_with("logs-") && op != "create" {
            (
                400,
                Some((
                    "illegal_argument_exception".into(),
                    "only write ops with an op_type of create are allowed in data streams".into(),
                )),
            )
        } else if doc.get("@timestamp").is_none() {
            (
                400,
                Some((
                    "document_parsing_exception".into(),
                    "data stream timestamp field [@timestamp] is missing".into(),
                )),
            )
        } else if op == "create" && s.docs.contains_key(&key) {
            (
                409,
                Some((
                    "version_conflict_engine_exception".into(),
                    format!(
                        "[{id}]: version conflict, document already exists (current version [1])"
                    ),
                )),
            )
        } else {
            s.docs.insert(key, doc);
            (201, None)
        };
        result["status"] = status.into();
        match error {
            Some((kind, reason)) => {
                any_error = true;
                result["error"] = json!({"type": kind, "reason": reason, "index": index});
            }
            None => {
                result["result"] = "created".into();
                result["_version"] = 1.into();
            }
        }
        items.push(json!({ op.as_str(): result }));
    }
    s.requests.push(BulkLog {
        status: 200,
        ids,
        gzip,
    });
    let body = json!({"took": 2, "errors": any_error, "items": items});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
