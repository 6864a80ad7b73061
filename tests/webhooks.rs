//! End-to-end: signed webhooks out (the `webhook` sink to an independent receiver), in
//! (`/v1/hooks/{source}` with requests signed by independent code), and `test-webhook`.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{sign, Receiver};
use support::*;

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";
const OTHER: &str = "whsec_dGhpcmQtc2VjcmV0LW5vdC1jb25maWd1cmVkIQ==";
const HUB: &str = "It's a Secret to Everybody";

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let text = config_text(dir, "max_bytes = \"256MiB\"", "", extra);
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn soar_sink(url: &str, extra: &str) -> String {
    format!(
        r#"
[sinks.soar]
type = "webhook"
url = "{url}"
secret = ["{OLD}", "{NEW}"]
hub_signature_secret = "{HUB}"
headers = {{ "X-Soar-Tenant" = "acme-soc" }}
{extra}
[sinks.soar.retry]
initial_backoff = "50ms"
max_backoff = "300ms"
"#
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn outbound_signatures_verify_with_an_independent_implementation() {
    let rx = Receiver::start(&[OLD, NEW], Some(HUB));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &soar_sink(&rx.url(), ""));
    let gw = Gateway::start(&cfg);
    let c = client();
    let (status, _, _) = post_ndjson(&c, &gw, "acme-token", decision("w-1", "acme", "ep-7f3a"));
    assert_eq!(status, 200);
    wait_until("the webhook arrives", || !rx.accepted().is_empty());
    let d = &rx.accepted()[0];
    assert_eq!(
        d.verified_by,
        vec![OLD.to_string(), NEW.to_string()],
        "one signature per secret"
    );
    assert_eq!(d.hub_signature_ok, Some(true));
    assert_eq!(
        d.id,
        format!("msg_{}", thoth_sinks::destination_id("acme", "w-1")),
        "webhook-id is unique per tenant and event"
    );
    assert!((now() - d.timestamp).abs() < 60);
    assert_eq!(d.body["event_id"], "w-1");
    assert_eq!(d.body["context"]["fleet"]["id"], "eng-macs");
    assert_eq!(d.headers["x-soar-tenant"], "acme-soc");
    assert_eq!(d.headers["content-type"], "application/json");
    assert!(
        d.headers.get("content-encoding").is_none(),
        "plain JSON by default"
    );
}

#[test]
fn a_soar_endpoint_failing_for_a_while_gets_everything_and_only_its_tenant() {
    let rx = Receiver::start(&[NEW], None);
    rx.with(|s| s.faults.extend([500, 500, 503, 500, 500]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &soar_sink(&rx.url(), "tenants = [\"acme\"]"));
    let gw = Gateway::start(&cfg);
    let c = client();
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&decision(&format!("a-{i}"), "acme", "ep-7f3a"));
        body.push('\n');
        body.push_str(&decision(&format!("g-{i}"), "globex", "glx-1"));
        body.push('\n');
    }
    assert_eq!(post_ndjson(&c, &gw, "admin-token", body).0, 200);
    wait_until("every acme event arrives", || {
        rx.accepted()
            .iter()
            .map(|d| d.id.clone())
            .collect::<HashSet<_>>()
            .len()
            >= 20
    });
    std::thread::sleep(Duration::from_millis(300));
    let ids: HashSet<String> = rx.accepted().iter().map(|d| d.id.clone()).collect();
    let events: HashSet<String> = rx
        .accepted()
        .iter()
        .map(|d| d.body["event_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.iter().all(|id| id.starts_with("a-")),
        "only acme's events: {events:?}"
    );
    assert_eq!((ids.len(), events.len()), (20, 20));
    let retried = rx.with(|s| s.deliveries.iter().filter(|d| d.status >= 500).count());
    assert_eq!(retried, 5);
    // A retry carries the same webhook-id.
    let first_failed = rx.with(|s| {
        s.deliveries
            .iter()
            .find(|d| d.status >= 500)
            .unwrap()
            .id
            .clone()
    });
    assert!(rx.accepted().iter().any(|d| d.id == first_failed));
}

fn hook_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[[sources.webhooks]]
name = "govapi"
tenant_id = "acme"
secrets = ["{OLD}", "{NEW}"]
tolerance = "5m"
"#
        ),
    )
}

fn post_hook(gw: &Gateway, id: &str, ts: i64, signature: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn inbound_hooks_verify_reject_precisely_and_accept_rotated_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hook_config(dir.path());
    let gw = Gateway::start(&cfg);
    let alert = |id: &str| {
        json!({"type":"alert","event_id":id,"tenant_id":"acme","severity":"high","title":"policy drift"}).to_string()
    };

    // Signed with the new secret, and with the old one: both verify (rotation).
    let body = alert("h-1");
    assert_eq!(
        post_hook(
            &gw,
            "msg_1",
            now(),
            &sign(NEW, "msg_1", now(), body.as_bytes()),
            &body
        )
        .0,
        200
    );
    let body2 = alert("h-2");
    assert_eq!(
        post_hook(
            &gw,
            "msg_2",
            now(),
            &sign(OLD, "msg_2", now(), body2.as_bytes()),
            &body2
        )
        .0,
        200
    );

    let check = |id: &str, ts: i64, sig: &str, body: &str, want: &str| {
        let (status, resp) = post_hook(&gw, id, ts, sig, body);
        assert_eq!(status, 401, "{resp}");
        let msg = resp["message"].as_str().unwrap();
        assert!(msg.contains(want), "{msg:?} should say {want:?}");
    };
    let b = alert("h-x");
    check(
        "msg_3",
        now(),
        &sign(OTHER, "msg_3", now(), b.as_bytes()),
        &b,
        "no v1 signature",
    );
    let old_ts = now() - 600;
    check(
        "msg_4",
        old_ts,
        &sign(NEW, "msg_4", old_ts, b.as_bytes()),
        &b,
        "outside the tolerance",
    );
    check(
        "msg_1",
        now(),
        &sign(NEW, "msg_1", now(), body.as_bytes()),
        &body,
        "replay",
    );
    let altered = b.replace("high", "low");
    check(
        "msg_5",
        now(),
        &sign(NEW, "msg_5", now(), b.as_bytes()),
        &altered,
        "no v1 signature",
    );
    let resp = client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .body(b.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().unwrap().contains("missing header webhook-id"));

    // {"events": [...]}, and a webhook_test forwarded like any other event.
    let batch = json!({"events": [
        {"type":"webhook_test","event_id":"t-1","tenant_id":"acme","title":"thothctl bootstrap --test-webhook"},
        {"type":"alert","event_id":"h-3","tenant_id":"acme","severity":"low","title":"x"}
    ]})
    .to_string();
    let (status, resp) = post_hook(
        &gw,
        "msg_6",
        now(),
        &sign(NEW, "msg_6", now(), batch.as_bytes()),
        &batch,
    );
    assert_eq!((status, resp), (200, json!({"accepted": 2})));
    // Another tenant's event through a hook bound to acme: 403.
    let foreign =
        json!({"type":"alert","event_id":"h-9","tenant_id":"globex","title":"x"}).to_string();
    assert_eq!(
        post_hook(
            &gw,
            "msg_7",
            now(),
            &sign(NEW, "msg_7", now(), foreign.as_bytes()),
            &foreign
        )
        .0,
        403
    );

    let mut out = Vec::new();
    wait_until("accepted hook events are in the file sink", || {
        out = read_out(dir.path());
        out.len() >= 4
    });
    let ids: HashSet<&str> = out
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from(["h-1", "h-2", "t-1", "h-3"]));
    let metrics = gw.metrics();
    assert!(
        metrics.contains("thoth_events_received_total{source=\"webhook\",type=\"webhook_test\"} 1")
    );
}

#[test]
fn replay_protection_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hook_config(dir.path());
    let gw = Gateway::start(&cfg);
    let body = json!({"type":"alert","event_id":"r-1","tenant_id":"acme","title":"x"}).to_string();
    let ts = now();
    let sig = sign(NEW, "msg_r", ts, body.as_bytes());
    assert_eq!(post_hook(&gw, "msg_r", ts, &sig, &body).0, 200);
    gw.kill9();
    let gw = Gateway::start(&cfg);
    let (status, resp) = post_hook(&gw, "msg_r", ts, &sig, &body);
    assert_eq!(status, 401);
    assert!(resp["message"].as_str().unwrap().contains("replay"));
}

#[test]
fn test_webhook_reports_ok_against_a_live_receiver_and_the_error_against_a_dead_port() {
    let rx = Receiver::start(&[NEW], Some(HUB));
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks", l.local_addr().unwrap())
    };
    let extra = format!(
        "{}\n[sinks.dead]\ntype = \"webhook\"\nurl = \"{dead}\"\nsecret = \"{NEW}\"\n",
        soar_sink(&rx.url(), "")
    );
    let cfg = write_config(dir.path(), &extra);
    let run = |sink: &str| {
        let out = std::process::Command::new(BIN)
            .args(["test-webhook", "--json", "--sink", sink, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    let (code, report) = run("soar");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["status"], 200);
    assert_eq!(report["sink"], "soar");
    assert!(report["latency_ms"].is_u64());
    assert_eq!(report["error"], Value::Null);
    let d = &rx.accepted()[0];
    assert_eq!(d.body["type"], "webhook_test");
    assert_eq!(d.verified_by, vec![NEW.to_string()]);

    let (code, report) = run("dead");
    assert_eq!(code, Some(1));
    assert_eq!(report["ok"], false);
    assert_eq!(report["status"], Value::Null);
    assert!(
        report["error"].as_str().unwrap().contains("connect"),
        "{report}"
    );
}
