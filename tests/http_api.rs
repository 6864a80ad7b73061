//! `docs/openapi.yaml` is the HTTP API: this suite starts the real binary, sends each
//! documented operation the requests that produce its documented status codes, and checks
//! every answer's status and body against the document (JSON Schema, no hand-written shape
//! checks). A status the binary answers that the document does not list fails; so does a
//! documented status that is neither exercised here nor named in [`EXERCISED_ELSEWHERE`].

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;
use support::schemas::{self, openapi};
use support::{config_text, decision, example, Gateway};

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Documented answers that need conditions this suite does not build, and the suite that
/// produces them.
const EXERCISED_ELSEWHERE: &[(&str, &str, &str)] = &[
    ("postEvents", "408", "tests/hostile.rs (slow body)"),
    ("postEvents", "503", "tests/gateway.rs (full WAL)"),
    ("postHook", "403", "tests/webhooks.rs (tenant-bound hook)"),
    ("postHook", "408", "tests/hostile.rs (slow body)"),
    ("postHook", "413", "tests/audit.rs (400 MB to every route)"),
    ("postHook", "415", "tests/webhooks.rs"),
    ("postHook", "503", "tests/gateway.rs (full WAL)"),
    ("putMdmSnapshot", "408", "tests/audit.rs (a push that never ends)"),
    ("reload", "409", "tests/reload.rs (the built-in default, on the fixed port 8686)"),
    ("reload", "500", "a sink that cannot start after preflight: not reproducible on demand"),
    ("reload", "503", "a reload racing shutdown: not reproducible on demand"),
    (
        "readiness",
        "503",
        "only between SIGTERM and the listener's close (snapshots load before it listens): not reproducible on demand",
    ),
];

/// One documented operation: its path template, method and responses.
struct Operation<'a> {
    id: String,
    pointer: String,
    op: &'a Value,
}

fn operations() -> Vec<Operation<'static>> {
    let mut out = Vec::new();
    for (path, item) in openapi()["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push(Operation {
                id: op["operationId"].as_str().unwrap().to_string(),
                pointer: format!(
                    "/paths/{}/{method}",
                    path.replace('~', "~0").replace('/', "~1")
                ),
                op,
            });
        }
    }
    out
}

/// Follows a local `$ref` of the document (responses are often `#/components/responses/X`).
fn deref(v: &Value, pointer: String) -> (&Value, String) {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let p = r.strip_prefix('#').unwrap().to_string();
            deref(openapi().pointer(&p).unwrap(), p)
        }
        None => (v, pointer),
    }
}

struct Checker {
    gw: Gateway,
    client: Client,
    seen: BTreeSet<(String, String)>,
}

impl Checker {
    /// Sends `req` as operation `id`, expects `status`, and validates the body against the
    /// schema the document gives for that status and content type.
    fn check(&mut self, id: &str, req: RequestBuilder, status: u16) -> Value {
        let ops = operations();
        let op = ops
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("no operation {id}"));
        let resp = req.send().expect("request");
        let got = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| {
                v.to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let retry_after = resp.headers().get("retry-after").cloned();
        let text = resp.text().unwrap();
        assert_eq!(got, status, "{id}: expected {status}, got {got}: {text}");
        let code = got.to_string();
        let Some(response) = op.op["responses"].get(&code) else {
            panic!("{id} answered {got}, which docs/openapi.yaml does not document: {text}");
        };
        let (response, pointer) = deref(response, format!("{}/responses/{code}", op.pointer));
        if response["headers"].get("Retry-After").is_some() {
            assert!(
                retry_after.is_some(),
                "{id} {got}: documented Retry-After is missing"
            );
        }
        let content = &response["content"];
        let Some(media) = content.get(&content_type) else {
            panic!("{id} {got}: content type {content_type:?} is not documented ({content})");
        };
        let media_pointer = content_type.replace('/', "~1");
        let schema_ref = serde_json::json!({
            "$ref": format!(
                "{}#{}/content/{media_pointer}/schema",
                schemas::doc_uri("openapi.yaml"),
                // A JSON pointer in a URI fragment: path templates' braces are percent-encoded.
                pointer.replace('{', "%7B").replace('}', "%7D")
            )
        });
        let validator = schemas::validator(&schema_ref);
        let body = if content_type.contains("json") && content_type != "application/x-ndjson" {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{id} {got}: not JSON ({e}): {text}"))
        } else {
            Value::String(text)
        };
        assert!(media.get("schema").is_some());
        let errors = schemas::errors(&validator, &body);
        assert!(
            errors.is_empty(),
            "{id} {got}: the body does not match docs/openapi.yaml:\n{errors}\n{body}"
        );
        self.seen.insert((id.to_string(), code));
        body
    }

    fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }
}

fn config(dir: &Path) -> String {
    config_text(
        dir,
        "max_bytes = \"64MiB\"",
        "",
        &format!(
            r#"
[[api.tokens]]
tenant_id = "acme"
token = "slow-token"
max_events_per_second = 1

[[sources.webhooks]]
name = "govapi"
secrets = ["{WEBHOOK_SECRET}"]

[[mdm.providers]]
name = "pushed"
tenant_id = "globex"
kind = "jamf"
"#
        ),
    ) + "\n[mdm]\nmax_push_bytes = \"64KiB\"\n"
}

fn signed_hook(c: &Checker, secret: &str, body: &str) -> RequestBuilder {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = format!("msg_{}", uuid_like(body));
    c.client
        .post(c.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            support::receiver::sign(secret, &id, ts, body.as_bytes()),
        )
        .body(body.to_string())
}

fn uuid_like(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..16])
}

#[test]
fn every_documented_operation_answers_as_docs_openapi_yaml_says() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    let text = config(dir.path());
    std::fs::write(&cfg, &text).unwrap();
    let mut c = Checker {
        gw: Gateway::start(&cfg),
        client: support::client(),
        seen: BTreeSet::new(),
    };
    let events = |c: &Checker, token: &str, body: String| {
        c.client
            .post(c.url("/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body)
    };

    // POST /v1/events
    let ok = format!(
        "{}\n{}\n",
        r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep-7f3a","agent_version":"0.2.7","status":"healthy"}"#,
        decision("api-1", "acme", "ep-7f3a")
    );
    c.check("postEvents", events(&c, "acme-token", ok), 200);
    c.check(
        "postEvents",
        events(&c, "acme-token", "{\"type\":\"decision\"}\n".into()),
        400,
    );
    c.check(
        "postEvents",
        events(&c, "acme-token", "x".into()).header("content-encoding", "gzip"),
        400,
    );
    c.check(
        "postEvents",
        events(&c, "nope", decision("a", "acme", "e")),
        401,
    );
    c.check(
        "postEvents",
        events(&c, "acme-token", decision("a", "globex", "e")),
        403,
    );
    c.check(
        "postEvents",
        events(&c, "acme-token", "x".repeat(70 * 1024)),
        413,
    );
    c.check(
        "postEvents",
        c.client
            .post(c.url("/v1/events"))
            .bearer_auth("acme-token")
            .header("content-type", "text/plain")
            .body(decision("a", "acme", "e")),
        415,
    );
    let five: String = (0..5)
        .map(|i| decision(&format!("s{i}"), "acme", "e") + "\n")
        .collect();
    // A full bucket lets one large batch through and is then in debt for seconds.
    c.check("postEvents", events(&c, "slow-token", five.clone()), 200);
    c.check("postEvents", events(&c, "slow-token", five), 429);

    // POST /v1/hooks/{source}
    let alert = r#"{"type":"alert","tenant_id":"acme","severity":"high","title":"t"}"#;
    c.check("postHook", signed_hook(&c, WEBHOOK_SECRET, alert), 200);
    c.check(
        "postHook",
        signed_hook(&c, WEBHOOK_SECRET, "{\"type\":\"alert\"}"),
        400,
    );
    c.check(
        "postHook",
        signed_hook(&c, "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==", alert),
        401,
    );
    let unknown = c
        .client
        .post(c.url("/v1/hooks/nobody"))
        .header("content-type", "application/json")
        .body("{}");
    c.check("postHook", unknown, 404);

    // PUT /v1/mdm/{provider}
    let jamf = std::fs::read(example("acme-jamf.json")).unwrap();
    let put = |c: &Checker, provider: &str, token: Option<&str>, body: Vec<u8>| {
        let mut r = c
            .client
            .put(c.url(&format!("/v1/mdm/{provider}")))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    c.check(
        "putMdmSnapshot",
        put(&c, "pushed", Some("admin-token"), jamf.clone()),
        200,
    );
    c.check(
        "putMdmSnapshot",
        put(
            &c,
            "pushed",
            Some("admin-token"),
            b"{\"results\": 5}".to_vec(),
        ),
        400,
    );
    c.check("putMdmSnapshot", put(&c, "pushed", None, jamf.clone()), 401);
    c.check(
        "putMdmSnapshot",
        put(&c, "pushed", Some("acme-token"), jamf.clone()),
        403,
    );
    c.check(
        "putMdmSnapshot",
        put(&c, "nobody", Some("admin-token"), jamf.clone()),
        404,
    );
    c.check(
        "putMdmSnapshot",
        put(&c, "acme-jamf", Some("admin-token"), jamf.clone()),
        409,
    );
    c.check(
        "putMdmSnapshot",
        put(&c, "pushed", Some("admin-token"), vec![b' '; 100 * 1024]),
        413,
    );

    // GET /v1/endpoints/{tenant_id}/{endpoint_id}
    let get = |c: &Checker, path: &str, token: Option<&str>| {
        let r = c.client.get(c.url(path));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    support::wait_for_event(dir.path(), "api-1");
    c.check(
        "getEndpoint",
        get(&c, "/v1/endpoints/acme/ep-7f3a", Some("admin-token")),
        200,
    );
    c.check(
        "getEndpoint",
        get(&c, "/v1/endpoints/acme/ep-unknown", Some("admin-token")),
        404,
    );
    c.check(
        "getEndpoint",
        get(&c, "/v1/endpoints/acme/ep-7f3a", None),
        401,
    );
    c.check(
        "getEndpoint",
        get(&c, "/v1/endpoints/acme/ep-7f3a", Some("acme-token")),
        403,
    );

    // GET /v1/tap: a stream; its first line is checked against the document.
    c.check(
        "tap",
        get(&c, "/v1/tap?stage=nowhere", Some("admin-token")),
        400,
    );
    c.check("tap", get(&c, "/v1/tap", None), 401);
    c.check("tap", get(&c, "/v1/tap", Some("acme-token")), 403);
    let stream = get(&c, "/v1/tap?stage=enriched", Some("admin-token"))
        .send()
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(stream.headers()["content-type"], "application/x-ndjson");
    c.client
        .post(c.url("/v1/events"))
        .bearer_auth("acme-token")
        .header("content-type", "application/x-ndjson")
        .body(decision("tap-1", "acme", "ep-7f3a"))
        .send()
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let tap_line: Value = serde_json::from_str(&line).unwrap();
    let tap_schema = schemas::validator(
        &serde_json::json!({"$ref": format!("{}#/components/schemas/TapLine", schemas::doc_uri("openapi.yaml"))}),
    );
    assert_eq!(schemas::errors(&tap_schema, &tap_line), "", "{line}");
    schemas::assert_enriched_event(&tap_line["event"]);
    c.seen.insert(("tap".into(), "200".into()));

    // POST /v1/reload
    let reload = |c: &Checker, token: Option<&str>| {
        let r = c.client.post(c.url("/v1/reload"));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    c.check("reload", reload(&c, Some("admin-token")), 200);
    std::fs::write(&cfg, text.replace("type = \"file\"", "type = \"nope\"")).unwrap();
    c.check("reload", reload(&c, Some("admin-token")), 400);
    std::fs::write(&cfg, &text).unwrap();
    c.check("reload", reload(&c, None), 401);
    c.check("reload", reload(&c, Some("acme-token")), 403);

    // Health and metrics.
    c.check("getHealth", get(&c, "/v1/health", None), 200);
    c.check("liveness", get(&c, "/health", None), 200);
    c.check("readiness", get(&c, "/ready", None), 200);
    c.check("metrics", get(&c, "/metrics", None), 200);

    // Every documented answer was seen, or is named with the suite that produces it.
    let mut missing = Vec::new();
    for op in operations() {
        for code in op.op["responses"].as_object().unwrap().keys() {
            let key = (op.id.clone(), code.clone());
            let elsewhere = EXERCISED_ELSEWHERE
                .iter()
                .any(|(i, s, _)| *i == op.id && s == code);
            if !c.seen.contains(&key) && !elsewhere {
                missing.push(format!("{} {code}", op.id));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but never checked: {missing:?}"
    );
}

#[test]
fn the_openapi_check_catches_an_undocumented_shape() {
    // The test of the test: a health body missing `wal` and an error without `message` fail.
    let health = schemas::validator(
        &serde_json::json!({"$ref": format!("{}#/components/schemas/Health", schemas::doc_uri("openapi.yaml"))}),
    );
    let bad = serde_json::json!({"status":"ok","sinks":{},"mdm":{"loaded":true,"endpoints":0},"checkins":{"healthy":0,"stale":0,"never":0},"state":{"backend":"local","ok":true,"last_error":null},"tasks":{}});
    assert!(schemas::errors(&health, &bad).contains("wal"));
    let error = schemas::validator(
        &serde_json::json!({"$ref": format!("{}#/components/schemas/Error", schemas::doc_uri("openapi.yaml"))}),
    );
    assert!(!schemas::errors(&error, &serde_json::json!({"error":"x","details":[]})).is_empty());
}
