//! `elasticsearch`: Elasticsearch 8/9 and OpenSearch 2 `_bulk` (runbooks/elastic.md).
//!
//! Each event is a `create` action with an `_id` unique per tenant and event id
//! ([`destination_id`]; a resend is idempotent: 409 on
//! create means already indexed, so delivered) and an ECS document with the whole enriched
//! event under `thoth`. A response with `"errors": true` is read item by item: 429 and 5xx
//! items are retried alone, other item errors are dead-lettered with `error.type` and
//! `error.reason`. Requests go round-robin over `endpoints`, skipping one that just failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use thoth_config::{ElasticAuth, ElasticConfig, ElasticTarget};
use thoth_event::{parse_rfc3339, write_json_string, EnrichedView};
use thoth_wal::record::EnrichedRecord;

use crate::destination::{
    body_excerpt, retry_after, write_destination_id, Destination, Embedded, EncodeError, Framing,
    ItemOutcome, Outcome, Reply, RequestBody,
};
use crate::SinkError;

/// The ECS version the documents follow, written as `ecs.version` on every document (ECS
/// requires it on every event). Tests check the documents against this version's field
/// definitions.
pub const ECS_VERSION: &str = "9.4.0";

/// How long an endpoint that did not answer is skipped.
const ENDPOINT_QUARANTINE: Duration = Duration::from_secs(30);

/// The Elasticsearch / OpenSearch destination.
pub struct Elasticsearch {
    endpoints: Vec<String>,
    down_until: Mutex<Vec<Option<Instant>>>,
    next: AtomicUsize,
    auth: ElasticAuth,
    target: ElasticTarget,
}

impl Elasticsearch {
    pub fn new(config: &ElasticConfig) -> Result<Elasticsearch, SinkError> {
        if let ElasticAuth::ApiKey(key) = &config.auth {
            HeaderValue::from_str(&format!("ApiKey {}", key.expose())).map_err(|_| {
                SinkError::Setting("the api_key contains characters not allowed in a header".into())
            })?;
        }
        Ok(Elasticsearch {
            down_until: Mutex::new(vec![None; config.endpoints.len()]),
            endpoints: config.endpoints.clone(),
            next: AtomicUsize::new(0),
            auth: config.auth.clone(),
            target: config.target.clone(),
        })
    }

    /// The next endpoint in turn that is not quarantined (or the next one, if all are).
    fn pick_endpoint(&self) -> &str {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let down = self.down_until.lock().unwrap();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| down[i].is_none_or(|t| t <= now))
            .map_or(&self.endpoints[start % n], |i| &self.endpoints[i])
    }

    fn index_for(&self, timestamp: Option<&str>) -> String {
        match &self.target {
            ElasticTarget::DataStream(ds) => ds.clone(),
            ElasticTarget::Index(pattern) => {
                let t = timestamp
                    .and_then(|t| parse_rfc3339(t).ok())
                    .unwrap_or_else(time::OffsetDateTime::now_utc);
                pattern
                    .replace("%Y", &format!("{:04}", t.year()))
                    .replace("%m", &format!("{:02}", u8::from(t.month())))
                    .replace("%d", &format!("{:02}", t.day()))
            }
        }
    }
}

/// ECS `event.risk_score` (Elastic's detection-rule scale) and `event.severity` for a risk.
fn risk_numbers(risk: &str) -> Option<(u32, u32)> {
    match risk {
        "low" => Some((21, 1)),
        "medium" => Some((47, 2)),
        "high" => Some((73, 3)),
        "critical" => Some((99, 4)),
        _ => None,
    }
}

/// Writes the ECS document for one enriched event (see `runbooks/elastic.md` for the
/// mapping): the ECS fields, then the whole event under `thoth` as its bytes — building a
/// JSON tree of the event only to print it again cost three quarters of this sink's time.
/// `json` must be the JSON object `view` was parsed from.
pub fn write_ecs_document(json: &[u8], view: &EnrichedView<'_>, out: &mut Vec<u8>) {
    let (at, thoth) = write_ecs_envelope(json, view, out);
    out.splice(at..at, json[thoth].iter().copied());
}

/// The ECS document without the event under `thoth`: returns where in `out` it goes and
/// which bytes of `json` it is (the object without surrounding whitespace).
fn write_ecs_envelope(
    json: &[u8],
    view: &EnrichedView<'_>,
    out: &mut Vec<u8>,
) -> (usize, std::ops::Range<usize>) {
    write_ecs_fields(view, out);
    out.extend_from_slice(b",\"thoth\":");
    let at = out.len();
    out.push(b'}');
    let start = json.len() - json.trim_ascii_start().len();
    (at, start..start.max(json.trim_ascii_end().len()))
}

/// Writes `"key":"value"` (with a leading comma unless `first`).
fn string_member(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_json_string(out, key);
    out.push(b':');
    write_json_string(out, value);
}

/// Writes `"key":{...}` with the members that have a value (with a leading comma unless
/// `first`); nothing when none has.
fn strings_object(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &str,
    members: &[(&str, Option<&str>)],
) {
    if members.iter().all(|(_, v)| v.is_none()) {
        return;
    }
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_json_string(out, key);
    out.extend_from_slice(b":{");
    let mut first_member = true;
    for (name, value) in members {
        if let Some(value) = value {
            string_member(out, &mut first_member, name, value);
        }
    }
    out.push(b'}');
}

/// Writes the ECS fields of an event (everything of its document but `thoth`), leaving the
/// document open. Written directly, members in key order at every level (as a JSON map
/// would print them), without building a tree.
fn write_ecs_fields(view: &EnrichedView<'_>, out: &mut Vec<u8>) {
    let event_type = view.event_type.as_deref().unwrap_or("event");
    let decision = view.decision.as_deref();
    let (category, ecs_type, outcome) = match (event_type, decision) {
        ("decision", Some("allow")) => ("api", "allowed", "success"),
        ("decision", Some("block")) => ("api", "denied", "failure"),
        ("decision", _) => ("api", "info", "unknown"),
        ("checkin", _) => ("host", "info", "success"),
        // ECS expects `allowed`, `denied` or `info` with `intrusion_detection`.
        ("alert", _) => ("intrusion_detection", "info", "unknown"),
        _ => ("configuration", "info", "unknown"),
    };
    out.extend_from_slice(b"{\"@timestamp\":");
    match view.time.as_deref() {
        Some(t) => write_json_string(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ecs\":{\"version\":\"");
    out.extend_from_slice(ECS_VERSION.as_bytes());
    out.extend_from_slice(b"\"}");

    out.extend_from_slice(b",\"event\":{");
    let mut first = true;
    string_member(out, &mut first, "action", decision.unwrap_or(event_type));
    out.extend_from_slice(b",\"category\":[");
    write_json_string(out, category);
    out.push(b']');
    string_member(out, &mut first, "dataset", "thoth.events");
    if let Some(id) = view.event_id.as_deref() {
        string_member(out, &mut first, "id", id);
    }
    let kind = if event_type == "alert" {
        "alert"
    } else {
        "event"
    };
    string_member(out, &mut first, "kind", kind);
    string_member(out, &mut first, "module", "thoth");
    string_member(out, &mut first, "outcome", outcome);
    if let Some((score, severity)) = view.risk.as_deref().and_then(risk_numbers) {
        out.extend_from_slice(
            format!(",\"risk_score\":{score},\"severity\":{severity}").as_bytes(),
        );
    }
    out.extend_from_slice(b",\"type\":[");
    write_json_string(out, ecs_type);
    out.extend_from_slice(b"]}");

    let mut first = false; // members of the document follow `@timestamp`
    let endpoint = view.context.as_ref().and_then(|c| c.endpoint.as_ref());
    let os = [
        ("name", endpoint.and_then(|e| e.os.as_deref())),
        ("version", endpoint.and_then(|e| e.os_version.as_deref())),
    ];
    let host = view.host();
    if host.is_some() || os.iter().any(|(_, v)| v.is_some()) {
        out.extend_from_slice(b",\"host\":{");
        let mut first_host = true;
        if let Some(h) = host {
            string_member(out, &mut first_host, "hostname", h);
            string_member(out, &mut first_host, "name", h);
        }
        strings_object(out, &mut first_host, "os", &os);
        out.push(b'}');
    }
    let labels = [
        ("endpoint_id", view.endpoint()),
        ("fleet_id", view.fleet_id()),
    ];
    strings_object(out, &mut first, "labels", &labels);
    if let Some(id) = view.tenant_id.as_deref() {
        let tenant = view.context.as_ref().and_then(|c| c.tenant.as_ref());
        let name = tenant.and_then(|t| t.name.as_deref());
        strings_object(
            out,
            &mut first,
            "organization",
            &[("id", Some(id)), ("name", name)],
        );
    }
    let user = view
        .user
        .as_deref()
        .or(endpoint.and_then(|e| e.owner.as_deref()));
    strings_object(out, &mut first, "user", &[("name", user)]);
}

#[derive(Debug, Deserialize)]
struct BulkReply {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Elasticsearch {
    /// Writes the bulk action line of `event` and returns its view, for the document after
    /// it; nothing is written when it fails.
    fn write_action<'e>(
        &self,
        event: &'e EnrichedRecord,
        out: &mut Vec<u8>,
    ) -> Result<EnrichedView<'e>, EncodeError> {
        let view = event.view()?;
        let id = view
            .event_id
            .as_deref()
            .ok_or(EncodeError::Missing("event_id"))?;
        let index = self.index_for(view.time.as_deref());
        out.extend_from_slice(b"{\"create\":{\"_id\":\"");
        // Unique per tenant: `event.id` keeps the event's own id.
        write_destination_id(&event.tenant_id, id, out);
        out.push(b'"');
        out.extend_from_slice(b",\"_index\":");
        write_json_string(out, &index);
        out.extend_from_slice(b"}}\n");
        Ok(view)
    }
}

impl Destination for Elasticsearch {
    fn framing(&self) -> Framing {
        // Each encoded event is two lines, each ending in a newline.
        Framing::CONCATENATED
    }

    fn encode_event(&self, event: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let view = self.write_action(event, out)?;
        write_ecs_document(&event.json, &view, out);
        out.push(b'\n');
        Ok(())
    }

    fn encode_envelope(
        &self,
        event: &EnrichedRecord,
        out: &mut Vec<u8>,
    ) -> Option<Result<Embedded, EncodeError>> {
        Some(self.write_action(event, out).map(|view| {
            let (at, json) = write_ecs_envelope(&event.json, &view, out);
            out.push(b'\n');
            Embedded { at, json }
        }))
    }

    fn request(&self, client: &reqwest::Client, body: &RequestBody<'_>) -> reqwest::RequestBuilder {
        let url = format!("{}/_bulk", self.pick_endpoint());
        let mut req = client
            .post(url)
            .header(CONTENT_TYPE, "application/x-ndjson");
        match &self.auth {
            ElasticAuth::None => {}
            ElasticAuth::ApiKey(key) => {
                if let Ok(mut v) = HeaderValue::from_str(&format!("ApiKey {}", key.expose())) {
                    v.set_sensitive(true);
                    req = req.header(AUTHORIZATION, v);
                }
            }
            ElasticAuth::Basic { username, password } => {
                req = req.basic_auth(username, Some(password.expose()));
            }
        }
        body.attach(req)
    }

    fn classify(&self, reply: &Reply<'_>) -> Outcome {
        let (status, headers, body) = (reply.status, reply.headers, reply.body);
        let events = reply.events;
        classify_bulk(status, retry_after(headers), body, events)
    }

    fn transport_error(&self, url: &str) {
        if let Some(i) = self
            .endpoints
            .iter()
            .position(|e| url.starts_with(e.as_str()))
        {
            tracing::warn!(endpoint = %self.endpoints[i], "endpoint did not answer; trying the others first");
            self.down_until.lock().unwrap()[i] = Some(Instant::now() + ENDPOINT_QUARANTINE);
        }
    }
}

/// A `_bulk` response as outcomes (per-item statuses of Elasticsearch's bulk API).
fn classify_bulk(
    status: StatusCode,
    after: Option<Duration>,
    body: &[u8],
    events: usize,
) -> Outcome {
    let reason = || format!("HTTP {status}: {}", body_excerpt(body));
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Outcome::Retry {
            after,
            reason: reason(),
        };
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Outcome::TooLarge { reason: reason() };
    }
    if matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) {
        return Outcome::Failing { reason: reason() };
    }
    if !status.is_success() {
        return Outcome::Reject { reason: reason() };
    }
    let reply: BulkReply = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                reason: format!("unreadable _bulk response ({e}): {}", body_excerpt(body)),
            }
        }
    };
    if !reply.errors {
        return Outcome::Delivered;
    }
    if reply.items.len() != events {
        // Cannot tell which events failed: send them all again (create makes that safe).
        return Outcome::Retry {
            after,
            reason: format!(
                "_bulk reported errors for {} items but {events} were sent",
                reply.items.len()
            ),
        };
    }
    let results = reply
        .items
        .iter()
        .map(|item| {
            // One key: the action (create / index), whatever the version.
            let result = item.values().next().cloned().unwrap_or_default();
            let code = result["status"].as_u64().unwrap_or(0);
            let error = &result["error"];
            let why = format!(
                "{}: {} (status {code})",
                error["type"].as_str().unwrap_or("error"),
                error["reason"].as_str().unwrap_or("no reason given")
            );
            match code {
                200..=299 | 409 => ItemOutcome::Delivered,
                429 | 500..=599 => ItemOutcome::Retry(why),
                _ => ItemOutcome::Reject(why),
            }
        })
        .collect();
    Outcome::Partial(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    const EVENT: &[u8] = br#"{"type":"decision","event_id":"e1","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-1","user":"jdoe@acme.com","risk":"critical","decision":"block","context":{"tenant":{"id":"acme","name":"Acme Corp"},"fleet":{"id":"eng-macs","name":"E"},"endpoint":{"id":"ep-1","hostname":"mbp-jdoe","os":"macOS","os_version":"15.1"}}}"#;

    fn es(target: ElasticTarget) -> Elasticsearch {
        Elasticsearch::new(&ElasticConfig {
            endpoints: vec!["http://a:9200".into(), "http://b:9200".into()],
            auth: ElasticAuth::None,
            target,
        })
        .unwrap()
    }

    #[test]
    fn a_bare_event_gets_only_the_fields_it_has() {
        let json = br#"{"type":"webhook_test","tenant_id":"acme","event_id":"t\"1"}"#;
        let mut out = Vec::new();
        write_ecs_document(json, &EnrichedView::parse(json).unwrap(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"@timestamp":null,"ecs":{"version":"9.4.0"},"event":{"action":"webhook_test","category":["configuration"],"dataset":"thoth.events","id":"t\"1","kind":"event","module":"thoth","outcome":"unknown","type":["info"]},"organization":{"id":"acme"},"thoth":{"type":"webhook_test","tenant_id":"acme","event_id":"t\"1"}}"#
        );
    }

    #[test]
    fn the_envelope_with_the_json_where_it_says_is_the_whole_encoding() {
        let es = es(ElasticTarget::DataStream(
            "logs-thoth.events-default".into(),
        ));
        let record = |json: &[u8]| EnrichedRecord::new("acme", Bytes::copy_from_slice(json));
        let padded = [&b" \n"[..], EVENT, b"\t "].concat();
        for json in [EVENT, &padded[..]] {
            let mut whole = Vec::new();
            es.encode_event(&record(json), &mut whole).unwrap();
            let mut out = b"earlier".to_vec();
            let Embedded { at, json: range } = es
                .encode_envelope(&record(json), &mut out)
                .unwrap()
                .unwrap();
            assert_eq!(
                &json[range.clone()],
                json.trim_ascii(),
                "without the whitespace"
            );
            let spliced = [&out[7..at], &json[range], &out[at..]].concat();
            assert_eq!(
                String::from_utf8(spliced).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        }
        // Refused the same way, before anything is written.
        let mut out = Vec::new();
        let err = es
            .encode_envelope(&record(br#"{"type":"decision"}"#), &mut out)
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("event_id"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn encodes_a_create_action_and_an_ecs_document() {
        let mut out = Vec::new();
        es(ElasticTarget::DataStream(
            "logs-thoth.events-default".into(),
        ))
        .encode_event(
            &EnrichedRecord::new("acme", Bytes::copy_from_slice(EVENT)),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        let action: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            action,
            json!({"create":{"_index":"logs-thoth.events-default","_id":crate::destination_id("acme", "e1")}})
        );
        let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(doc["@timestamp"], "2026-11-28T10:00:00.120Z");
        assert_eq!(
            doc["event"],
            json!({"kind":"event","category":["api"],"type":["denied"],"action":"block","outcome":"failure",
                   "dataset":"thoth.events","module":"thoth","id":"e1","risk_score":99,"severity":4})
        );
        assert_eq!(
            doc["host"],
            json!({"name":"mbp-jdoe","hostname":"mbp-jdoe","os":{"name":"macOS","version":"15.1"}})
        );
        assert_eq!(doc["user"], json!({"name":"jdoe@acme.com"}));
        assert_eq!(doc["organization"], json!({"id":"acme","name":"Acme Corp"}));
        assert_eq!(
            doc["labels"],
            json!({"fleet_id":"eng-macs","endpoint_id":"ep-1"})
        );
        assert_eq!(
            doc["thoth"],
            serde_json::from_slice::<serde_json::Value>(EVENT).unwrap()
        );
    }

    #[test]
    fn index_patterns_take_the_event_date() {
        let mut out = Vec::new();
        es(ElasticTarget::Index("thoth-%Y.%m.%d".into()))
            .encode_event(
                &EnrichedRecord::new("acme", Bytes::copy_from_slice(EVENT)),
                &mut out,
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let action: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "thoth-2026.11.28");
    }

    #[test]
    fn mixed_item_results() {
        let body = json!({"took":3,"errors":true,"items":[
            {"create":{"_index":"x","_id":"1","status":201,"result":"created"}},
            {"create":{"_index":"x","_type":"_doc","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
            {"create":{"_index":"x","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"x","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}},
            {"create":{"_index":"x","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}).to_string();
        let Outcome::Partial(r) = classify_bulk(StatusCode::OK, None, body.as_bytes(), 5) else {
            panic!()
        };
        assert_eq!(r[0], ItemOutcome::Delivered);
        assert_eq!(r[1], ItemOutcome::Delivered);
        assert!(matches!(&r[2], ItemOutcome::Retry(_)));
        assert_eq!(
            r[3],
            ItemOutcome::Reject(
                "mapper_parsing_exception: failed to parse field [x] (status 400)".into()
            )
        );
        assert!(matches!(&r[4], ItemOutcome::Retry(_)));
        let ok = json!({"errors":false,"items":[{"create":{"status":201}}]}).to_string();
        assert_eq!(
            classify_bulk(StatusCode::OK, None, ok.as_bytes(), 1),
            Outcome::Delivered
        );
        assert!(matches!(
            classify_bulk(StatusCode::TOO_MANY_REQUESTS, None, b"", 1),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify_bulk(StatusCode::UNAUTHORIZED, None, b"", 1),
            Outcome::Failing { .. }
        ));
    }

    #[test]
    fn authentication_headers() {
        let client = reqwest::Client::new();
        let auth_of = |auth: ElasticAuth| {
            let es = Elasticsearch::new(&ElasticConfig {
                endpoints: vec!["http://a:9200".into()],
                auth,
                target: ElasticTarget::DataStream("d".into()),
            })
            .unwrap();
            let req = es
                .request(
                    &client,
                    &RequestBody {
                        sent: Bytes::new(),
                        gzip: true,
                        plain: b"",
                        tenants: &[],
                    },
                )
                .build()
                .unwrap();
            assert_eq!(req.url().as_str(), "http://a:9200/_bulk");
            assert_eq!(req.headers()["content-type"], "application/x-ndjson");
            assert_eq!(req.headers()["content-encoding"], "gzip");
            req.headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(auth_of(ElasticAuth::None), None);
        assert_eq!(
            auth_of(ElasticAuth::ApiKey(thoth_config::Secret::new("a2V5"))),
            Some("ApiKey a2V5".into())
        );
        assert_eq!(
            auth_of(ElasticAuth::Basic {
                username: "thoth".into(),
                password: thoth_config::Secret::new("s3cret"),
            }),
            Some("Basic dGhvdGg6czNjcmV0".into())
        );
    }

    #[test]
    fn round_robin_skips_an_endpoint_that_failed() {
        let e = es(ElasticTarget::DataStream("d".into()));
        let picks: Vec<&str> = (0..4).map(|_| e.pick_endpoint()).collect();
        assert_eq!(
            picks,
            [
                "http://a:9200",
                "http://b:9200",
                "http://a:9200",
                "http://b:9200"
            ]
        );
        e.transport_error("http://a:9200/_bulk");
        assert!((0..4).all(|_| e.pick_endpoint() == "http://b:9200"));
    }
}
