//! End-to-end: VRL global transform, sink conditions and remaps, `validate` diagnostics and
//! `thoth-gateway test`.

mod support;

use std::collections::HashSet;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::*;

const SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

const TRANSFORM: &str = r#"
[transform]
source = '''
.severity_score = if .risk == "critical" { 4 } else if .risk == "high" { 3 } else { 1 }
.fleet = .context.fleet.id
del(.proxy_version)
if .type == "decision" && .decision == "allow" && .risk == "low" { abort }
.gateway = "thoth"
'''
"#;

fn sinks(dir: &std::path::Path, soar_url: &str) -> String {
    format!(
        r#"
[sinks.critical]
type = "file"
path = "{critical}"
condition = '.risk == "critical"'

[sinks.checkins]
type = "file"
path = "{checkins}"
condition = '.type == "checkin"'
tenants = ["acme"]

[sinks.soar]
type = "webhook"
url = "{soar_url}"
secret = "{SECRET}"
condition = '.risk == "critical" || .type == "alert"'
remap = '. = {{"event_id": .event_id, "title": .reason, "endpoint": .context.endpoint.hostname, "score": .severity_score}}'
"#,
        critical = dir.join("critical.ndjson").display(),
        checkins = dir.join("checkins.ndjson").display(),
    )
}

fn read(path: &std::path::Path) -> Vec<Value> {
    read_ndjson(path)
}

fn ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_sink_gets_exactly_what_its_condition_selects_in_its_remap_shape() {
    let rx = Receiver::start(&[SECRET], None);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{TRANSFORM}\n{}", sinks(dir.path(), &rx.url()));
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), "max_bytes = \"64MiB\"", "", &extra),
    )
    .unwrap();
    let gw = Gateway::start(&cfg);
    let ev = |id: &str, tenant: &str, t: &str, risk: &str, decision: &str| {
        json!({"type": t, "event_id": id, "tenant_id": tenant, "endpoint_id": "ep-7f3a", "risk": risk,
               "decision": decision, "reason": format!("reason {id}"), "proxy_version": "0.2.7"})
        .to_string()
    };
    let lines = [
        ev("c1", "acme", "decision", "critical", "block"),
        ev("h1", "acme", "decision", "high", "block"),
        ev("dropped", "acme", "decision", "low", "allow"),
        json!({"type":"checkin","event_id":"k1","tenant_id":"acme","endpoint_id":"ep-7f3a"}).to_string(),
        json!({"type":"checkin","event_id":"k2","tenant_id":"globex","endpoint_id":"glx-1"}).to_string(),
        json!({"type":"alert","event_id":"a1","tenant_id":"globex","title":"drift","reason":"policy drift"}).to_string(),
        ev("c2", "globex", "decision", "critical", "step_up"),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(post_ndjson(&client(), &gw, "admin-token", body).0, 200);

    wait_until("the catch-all sink has every transformed event", || {
        read_out(dir.path()).len() >= 6
    });
    wait_until("soar has its events", || rx.accepted().len() >= 3);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let all = read_out(dir.path());
    assert_eq!(
        ids(&all),
        HashSet::from(["c1", "h1", "k1", "k2", "a1", "c2"].map(String::from)),
        "the aborted event is in none"
    );
    let c1 = all.iter().find(|e| e["event_id"] == "c1").unwrap();
    assert_eq!(c1["severity_score"], 4);
    assert_eq!(c1["fleet"], "eng-macs");
    assert_eq!(c1["gateway"], "thoth");
    assert!(
        c1.get("proxy_version").is_none(),
        "removed by the transform"
    );
    assert_eq!(c1["context"]["endpoint"]["hostname"], "mbp-jdoe");

    assert_eq!(
        ids(&read(&dir.path().join("critical.ndjson"))),
        HashSet::from(["c1", "c2"].map(String::from))
    );
    assert_eq!(
        ids(&read(&dir.path().join("checkins.ndjson"))),
        HashSet::from(["k1".to_string()])
    );
    let soar: Vec<Value> = rx.accepted().iter().map(|d| d.body.clone()).collect();
    assert_eq!(
        ids(&soar),
        HashSet::from(["c1", "a1", "c2"].map(String::from))
    );
    let c1 = soar.iter().find(|e| e["event_id"] == "c1").unwrap();
    assert_eq!(
        c1,
        &json!({"event_id":"c1","title":"reason c1","endpoint":"mbp-jdoe","score":4}),
        "the remap's shape, only"
    );
    assert!(rx.accepted().iter().all(|d| !d.verified_by.is_empty()));

    // The aborted event is dead-lettered in `ingest` with the VRL error, and counted.
    let list = dlq(&cfg, "list", "ingest");
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["entries"][0]["event_id"], "dropped");
    assert!(list["entries"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("transform.source: aborted"));
    let metrics = gw.metrics();
    assert!(
        metrics.contains("thoth_transform_errors_total{stage=\"global\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thoth_route_events_total{matched=\"true\",sink=\"critical\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thoth_route_events_total{matched=\"false\",sink=\"critical\"} 4"),
        "{metrics}"
    );
}

#[test]
fn validate_reports_vrl_errors_with_key_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[transform]
source = '''
.a = 1
.b = = 2
'''
[sinks.typed]
type = "file"
path = "typed.ndjson"
condition = '''
.x = 1
upcase(.risk) == "HIGH"
'''
"#;
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), "max_bytes = \"64MiB\"", "", extra),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    let syntax = errors
        .iter()
        .find(|e| e["path"] == "transform.source")
        .expect("the syntax error");
    assert!(
        syntax["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2, column 6: error[E"),
        "{syntax}"
    );
    let typed = errors
        .iter()
        .find(|e| e["path"] == "sinks.typed.condition")
        .expect("the type error");
    let msg = typed["message"].as_str().unwrap();
    assert!(msg.starts_with("line 2, column 8: error[E110]"), "{msg}");
    assert!(msg.contains("upcase"), "VRL's own diagnostic: {msg}");
}

#[test]
fn config_tests_pass_and_fail_with_expected_vs_actual() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"{TRANSFORM}
{sinks}
[[tests]]
name = "critical goes to soar"
input = {{ type = "decision", tenant_id = "acme", endpoint_id = "ep-7f3a", risk = "critical", decision = "block", reason = "unsanctioned MCP server" }}
expect_sinks = ["out", "critical", "soar"]
expect = 'assert_eq!(.context.fleet.id, "eng-macs")'
expect_remap = {{ soar = 'assert_eq!(.title, "unsanctioned MCP server")' }}

[[tests]]
name = "a high decision is critical"
input = {{ type = "decision", tenant_id = "acme", endpoint_id = "ep-7f3a", risk = "high", decision = "block" }}
expect_sinks = ["out", "critical"]
expect = 'assert_eq!(.severity_score, 4)'
"#,
        sinks = sinks(dir.path(), "http://127.0.0.1:9/hooks")
    );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), "max_bytes = \"64MiB\"", "", &extra),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["test", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PASS critical goes to soar"), "{text}");
    assert!(text.contains("FAIL a high decision is critical"), "{text}");
    assert!(
        text.contains("expected [critical, out] but the event reaches [out]"),
        "{text}"
    );
    assert!(text.contains("missing: [critical]"), "{text}");
    assert!(text.contains("assertion failed: 3 == 4"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");

    let out = std::process::Command::new(BIN)
        .args(["test", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["tests"][0]["ok"], true);
    assert_eq!(report["tests"][1]["failures"].as_array().unwrap().len(), 2);
}
