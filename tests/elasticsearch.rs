//! End-to-end: the real binary delivering to the `_bulk` emulator.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::elastic::{Elastic, Flavor};
use support::*;
use thoth_sinks::{destination_id, ECS_VERSION};

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

fn write_config(dir: &std::path::Path, endpoints: &[String]) -> std::path::PathBuf {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let extra = format!(
        r#"
[sinks.elastic]
type = "elasticsearch"
endpoints = [{}]
api_key = "{API_KEY}"
data_stream = "logs-thoth.events-default"
[sinks.elastic.batch]
max_events = 500
timeout = "50ms"
[sinks.elastic.retry]
initial_backoff = "50ms"
max_backoff = "400ms"
"#,
        list.join(", ")
    );
    let text = config_text(dir, "max_bytes = \"1GiB\"", "", &extra)
        .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"8MiB\"");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn metric(gw: &Gateway, line_prefix: &str) -> Option<u64> {
    let text = gw.metrics();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_hundred_thousand_events_land_once_with_ecs_fields() {
    let es = Elastic::start(Flavor::Elasticsearch8, Some(API_KEY));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[es.url()]);
    let gw = Gateway::start(&cfg);
    const TOTAL: usize = 100_000;
    let risks = ["low", "medium", "high", "critical"];
    let decisions = ["allow", "step_up", "block"];
    for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(2_000) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|&i| {
                json!({"type":"decision","event_id":format!("e-{i}"),"tenant_id":"acme","endpoint_id":"ep-7f3a",
                       "time":"2026-11-28T10:00:00.120Z","user":"jdoe@acme.com","risk":risks[i % 4],"decision":decisions[i % 3]})
                .to_string()
            })
            .collect();
        post_all(&gw, "acme-token", &lines);
    }
    wait_until("every document is indexed", || es.doc_count() >= TOTAL);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(es.doc_count(), TOTAL, "once each");
    assert!(es.violations().is_empty(), "{:?}", es.violations());
    let d = es.doc("e-7").unwrap(); // risk critical (7 % 4 = 3), decision step_up (7 % 3 = 1)
    assert_eq!(d["@timestamp"], "2026-11-28T10:00:00.120Z");
    assert_eq!(d["event"]["kind"], "event");
    assert_eq!(d["event"]["action"], "step_up");
    assert_eq!(d["event"]["risk_score"], 99);
    assert_eq!(d["event"]["severity"], 4);
    assert_eq!(d["host"]["name"], "mbp-jdoe");
    assert_eq!(d["host"]["os"], json!({"name":"macOS","version":"15.1"}));
    assert_eq!(d["user"]["name"], "jdoe@acme.com");
    assert_eq!(d["organization"], json!({"id":"acme","name":"Acme Corp"}));
    assert_eq!(
        d["labels"],
        json!({"fleet_id":"eng-macs","endpoint_id":"ep-7f3a"})
    );
    assert_eq!(d["thoth"]["context"]["endpoint"]["serial"], "C02XK1ZJMD6R");
    assert_eq!(d["ecs"]["version"], ECS_VERSION);
    assert_eq!(support::ecs::violations(&d), Vec::<String>::new());
    let d = es.doc("e-2").unwrap();
    assert_eq!(
        (
            d["event"]["action"].as_str(),
            d["event"]["outcome"].as_str()
        ),
        (Some("block"), Some("failure"))
    );
    assert!(es.requests().iter().all(|r| r.gzip));
    // The runbook's index template maps every ECS field the sink writes.
    let template = index_template();
    let mapped = &template["template"]["mappings"]["properties"];
    for path in leaf_paths(&es.doc("e-7").unwrap(), "") {
        if path.starts_with("thoth.") {
            continue;
        }
        let mut node = mapped;
        for (i, part) in path.split('.').enumerate() {
            node = if i == 0 {
                &node[part]
            } else {
                &node["properties"][part]
            };
        }
        assert!(
            node.get("type").is_some(),
            "{path} is not mapped by the index template"
        );
    }
    assert_eq!(
        metric(
            &gw,
            "thoth_sink_events_total{outcome=\"delivered\",sink=\"elastic\"}"
        ),
        Some(TOTAL as u64)
    );
}

#[test]
fn mixed_item_results_resend_only_the_retryable_items() {
    let es = Elastic::start(Flavor::Elasticsearch8, Some(API_KEY));
    // `_id`s are unique per tenant: the tenant's and the event's id together.
    let id = |event: &str| destination_id("acme", event);
    es.with(|s| {
        s.docs.insert(
            ("logs-thoth.events-default".into(), id("b")),
            json!({"@timestamp":"x"}),
        );
        s.item_faults
            .insert(id("c"), [(429, "es_rejected_execution_exception")].into());
        s.item_faults
            .insert(id("d"), [(400, "mapper_parsing_exception")].into());
        s.item_faults
            .insert(id("e"), [(503, "unavailable_shards_exception")].into());
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[es.url()]);
    let gw = Gateway::start(&cfg);
    let ids = ["a", "b", "c", "d", "e"];
    let lines: Vec<String> = ids
        .iter()
        .map(|id| decision(id, "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    wait_until("c and e arrive", || {
        es.doc("c").is_some() && es.doc("e").is_some()
    });
    let mut list = Value::Null;
    wait_until("d is dead-lettered", || {
        list = dlq(&cfg, "list", "elastic");
        list["count"] == 1
    });
    assert_eq!(list["entries"][0]["event_id"], "d");
    let reason = list["entries"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("mapper_parsing_exception: "), "{reason}");
    wait_until("the cursor passes the batch", || {
        metric(&gw, "thoth_sink_queue_events{sink=\"elastic\"}") == Some(0)
    });
    let requests = es.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].ids, ids.map(id));
    assert_eq!(
        requests[1].ids,
        [id("c"), id("e")],
        "only the 429 and 503 items are resent"
    );
    assert!(es.doc("a").is_some() && es.doc("d").is_none());
    assert_eq!(
        es.doc(&id("b")).unwrap(),
        json!({"@timestamp":"x"}),
        "the 409 document is untouched"
    );
    assert_eq!(
        metric(
            &gw,
            "thoth_sink_events_total{outcome=\"delivered\",sink=\"elastic\"}"
        ),
        Some(4)
    );
}

#[test]
fn replaying_the_stream_after_a_crash_creates_no_duplicates() {
    let es = Elastic::start(Flavor::OpenSearch2, Some(API_KEY));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[es.url()]);
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..1000)
        .map(|i| decision(&format!("r-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    wait_until("all indexed", || es.doc_count() >= 1000);
    wait_until("the cursor is persisted", || {
        metric(&gw, "thoth_sink_queue_events{sink=\"elastic\"}") == Some(0)
    });
    gw.kill9();

    // Rewind the sink's cursor to the start of the log: everything is sent again.
    std::fs::write(dir.path().join("data/wal/cursors/elastic"), "0\n").unwrap();
    let before = es.requests().len();
    let gw = Gateway::start(&cfg);
    wait_until("the whole stream is resent", || {
        let resent: HashSet<String> = es.requests()[before..]
            .iter()
            .flat_map(|r| r.ids.clone())
            .collect();
        resent.len() >= 1000
    });
    wait_until("the replay is done", || {
        metric(&gw, "thoth_sink_queue_events{sink=\"elastic\"}") == Some(0)
    });
    assert_eq!(es.doc_count(), 1000, "no duplicate documents");
    assert_eq!(
        metric(
            &gw,
            "thoth_sink_events_total{outcome=\"delivered\",sink=\"elastic\"}"
        ),
        Some(1000),
        "409s count as delivered"
    );
    assert_eq!(dlq(&cfg, "list", "elastic")["count"], 0);
}

#[test]
fn delivery_continues_through_the_other_endpoint_when_one_is_down() {
    let es = Elastic::start(Flavor::OpenSearch2, Some(API_KEY));
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[dead, es.url()]);
    let gw = Gateway::start(&cfg);
    for b in 0..10 {
        let lines: Vec<String> = (0..100)
            .map(|i| decision(&format!("f-{b}-{i}"), "acme", "ep-7f3a"))
            .collect();
        post_all(&gw, "acme-token", &lines);
    }
    wait_until("every event arrives through the live endpoint", || {
        es.doc_count() >= 1000
    });
    assert_eq!(dlq(&cfg, "list", "elastic")["count"], 0);
    assert!(
        metric(
            &gw,
            "thoth_sink_requests_total{sink=\"elastic\",status=\"error\"}"
        )
        .unwrap_or(0)
            >= 1,
        "the dead endpoint was tried"
    );
}

/// The runbook's index template.
fn index_template() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/elastic/index-template.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn leaf_paths(v: &Value, prefix: &str) -> Vec<String> {
    match v.as_object() {
        Some(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &p)
            })
            .collect(),
        None => vec![prefix.to_string()],
    }
}

#[test]
fn two_tenants_sending_the_same_event_id_both_land() {
    let es = Elastic::start(Flavor::Elasticsearch8, Some(API_KEY));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[es.url()]);
    let gw = Gateway::start(&cfg);
    post_all(
        &gw,
        "acme-token",
        &[decision("shared-id", "acme", "ep-7f3a")],
    );
    post_all(
        &gw,
        "globex-token",
        &[decision("shared-id", "globex", "ep-2001")],
    );
    wait_until("both documents are indexed", || es.doc_count() == 2);
    let tenants: HashSet<String> = es.with(|s| {
        s.docs
            .values()
            .map(|d| {
                assert_eq!(d["event"]["id"], "shared-id", "the event keeps its own id");
                d["organization"]["id"].as_str().unwrap().to_string()
            })
            .collect()
    });
    assert_eq!(tenants, ["acme", "globex"].map(String::from).into());
    assert_eq!(dlq(&cfg, "list", "elastic")["count"], 0);
}

/// Every kind of document the sink writes, checked against Elastic's own ECS field definitions
/// (the pinned `ecs_flat.yml` in `tests/data/`), not against expectations written here.
#[test]
fn every_document_meets_the_ecs_field_definitions() {
    assert_eq!(
        ECS_VERSION,
        support::ecs::PINNED_VERSION,
        "the documents claim the ECS version whose definitions the tests hold"
    );
    let es = Elastic::start(Flavor::Elasticsearch8, Some(API_KEY));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[es.url()]);
    let gw = Gateway::start(&cfg);
    let mut lines = Vec::new();
    for (i, (risk, decision)) in ["low", "medium", "high", "critical"]
        .iter()
        .flat_map(|r| ["allow", "step_up", "block"].map(|d| (*r, d)))
        .enumerate()
    {
        lines.push(json!({"type":"decision","event_id":format!("d-{i}"),"tenant_id":"acme","endpoint_id":"ep-7f3a",
            "risk":risk,"decision":decision,"surface":"mcp","action":{"kind":"tool_call","tool":"fs.write"}}).to_string());
    }
    lines.extend([
        json!({"type":"decision","event_id":"unmatched","tenant_id":"acme","endpoint_id":"ep-nobody","risk":"low","decision":"allow"}),
        json!({"type":"decision","event_id":"by-host","tenant_id":"acme","endpoint_id":"ep-x","hostname":"MBA-ASMITH","user":"asmith","risk":"high","decision":"block"}),
        json!({"type":"checkin","event_id":"c-1","tenant_id":"acme","endpoint_id":"ep-7f3a","agent_version":"0.2.7","status":"healthy"}),
        json!({"type":"checkin","event_id":"c-2","tenant_id":"acme","endpoint_id":"ep-7f3a","status":"degraded"}),
        json!({"type":"alert","event_id":"a-1","tenant_id":"acme","endpoint_id":"ep-7f3a","severity":"high","risk":"critical","title":"policy_tampering"}),
        json!({"type":"alert","event_id":"a-2","tenant_id":"acme","title":"no endpoint"}),
    ].map(|v| v.to_string()));
    post_all(&gw, "acme-token", &lines);
    post_all(&gw, "globex-token", &[decision("g-1", "globex", "ep-2001")]);
    let report = cli_json(&cfg, &["test-webhook", "--sink", "elastic"]);
    assert_eq!(report["ok"], true, "{report}");
    let expected = lines.len() + 2;
    wait_until("every document is indexed", || es.doc_count() >= expected);
    let docs: Vec<Value> = es.with(|s| s.docs.values().cloned().collect());
    assert_eq!(docs.len(), expected);
    let mut kinds = HashSet::new();
    for doc in &docs {
        assert_eq!(
            support::ecs::violations(doc),
            Vec::<String>::new(),
            "document {doc}"
        );
        kinds.insert(doc["thoth"]["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        kinds.len(),
        4,
        "decisions, check-ins, alerts and the test event: {kinds:?}"
    );

    // The runbook's index template maps each ECS field with ECS's own type.
    let template = index_template();
    let mut mapped = Vec::new();
    mapped_types(
        &template["template"]["mappings"]["properties"],
        "",
        &mut mapped,
    );
    let defs = support::ecs::fields();
    for (path, kind) in mapped.iter().filter(|(p, _)| !p.starts_with("thoth.")) {
        let ecs_kind = defs
            .get(path.as_str())
            .map(|f| f.kind.as_str())
            .or_else(|| path.starts_with("labels.").then_some("keyword"));
        assert_eq!(
            ecs_kind,
            Some(kind.as_str()),
            "{path} in the index template"
        );
    }
}

/// `(path, type)` of every mapped field of an index template's `properties`.
fn mapped_types(props: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    for (name, m) in props.as_object().into_iter().flatten() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match m["type"].as_str() {
            Some(kind) => out.push((path, kind.to_string())),
            None => mapped_types(&m["properties"], &path, out),
        }
    }
}

/// The check above can fail: the mistakes it exists to catch are each reported.
#[test]
fn the_ecs_check_finds_what_breaks_the_definitions() {
    let good = json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},
        "event":{"kind":"alert","category":["intrusion_detection"],"type":["info"],"severity":3},
        "labels":{"fleet_id":"eng"},"thoth":{"anything":{"goes":1}}});
    assert_eq!(support::ecs::violations(&good), Vec::<String>::new());
    let cases = [
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","event":{"kind":"event"}}),
            "ecs.version: required",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"event":{"category":["intrusion_detection"],"type":["indicator"]}}),
            "event.type \"indicator\" is not one ECS expects",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"event":{"kind":"finding"}}),
            "event.kind: \"finding\" is not one of",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"event":{"severity":"high"}}),
            "event.severity: ECS type long",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"event":{"category":"api"}}),
            "normalizes it to an array",
        ),
        (
            json!({"@timestamp":"yesterday","ecs":{"version":"9.4.0"}}),
            "@timestamp: ECS type date",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"host":{"fleet":"x"}}),
            "host.fleet: not an ECS field",
        ),
        (
            json!({"@timestamp":"2026-11-28T10:00:00Z","ecs":{"version":"9.4.0"},"labels":{"n":1}}),
            "members of labels are keyword",
        ),
    ];
    for (doc, expected) in cases {
        let found = support::ecs::violations(&doc);
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "{doc}: expected {expected:?}, found {found:?}"
        );
    }
}
