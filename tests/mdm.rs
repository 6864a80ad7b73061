//! End-to-end: MDM sync from the Jamf Pro and Graph emulators, pushes, and check-in health with
//! stale alerts.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::mdm::*;
use support::*;

/// A config whose providers are the emulators' APIs (or push-only), one catch-all file sink,
/// an alerts-only file sink and a decisions-only one.
fn write_config(dir: &std::path::Path, mdm_url: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
data_dir = "{data}"
[api]
listen = "127.0.0.1:0"
[[api.tokens]]
tenant_id = "acme"
token = "acme-token"
[[api.tokens]]
admin = true
token = "admin-token"
[wal]
max_bytes = "256MiB"
[[tenants]]
id = "acme"
name = "Acme Corp"
[[tenants]]
id = "globex"
[mdm]
refresh_interval = "1s"
[[mdm.providers]]
name = "acme-jamf"
tenant_id = "acme"
kind = "jamf"
url = "{mdm_url}"
client_id = "{JAMF_CLIENT_ID}"
client_secret = "{JAMF_CLIENT_SECRET}"
endpoint_id_attribute = "Thoth Endpoint ID"
[[mdm.providers]]
name = "globex-intune"
tenant_id = "globex"
kind = "intune"
url = "{mdm_url}"
authority = "{mdm_url}"
azure_tenant_id = "{GRAPH_TENANT}"
client_id = "{GRAPH_CLIENT_ID}"
client_secret = "{GRAPH_CLIENT_SECRET}"
[[mdm.providers]]
name = "acme-pushed"
tenant_id = "acme"
kind = "intune"
[[mdm.fleet_rules]]
tenant_id = "acme"
when = {{ department = "Engineering" }}
fleet = {{ id = "eng", name = "Engineering" }}
[checkins]
stale_after = "2s"
[sinks.out]
type = "file"
path = "{out}"
[sinks.alerts]
type = "file"
path = "{alerts}"
condition = '.type == "alert"'
[sinks.decisions]
type = "file"
path = "{decisions}"
condition = '.type == "decision"'
{extra}
"#,
        data = dir.join("data").display(),
        out = out_path(dir).display(),
        alerts = dir.join("alerts.ndjson").display(),
        decisions = dir.join("decisions.ndjson").display(),
    );
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn mdm_sync(cfg: &std::path::Path) -> Value {
    let out = std::process::Command::new(BIN)
        .args(["mdm", "sync", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    report
}

fn counts(report: &Value, provider: &str) -> (u64, u64, u64, u64) {
    let p = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .unwrap();
    assert_eq!(p["errors"], json!([]), "{p}");
    let n = |k: &str| p[k].as_u64().unwrap();
    (n("imported"), n("upserted"), n("unchanged"), n("removed"))
}

#[test]
fn mdm_sync_reports_imported_upserted_unchanged_removed() {
    let emu = MdmEmulator::start(2500, 1200);
    emu.with(|s| {
        s.page_delay = Duration::from_millis(20);
        s.faults.push_back((429, Some(1))); // one throttled request
        s.token_uses = 10; // tokens "expire" after 10 requests
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu.url(), "");
    let first = mdm_sync(&cfg);
    assert_eq!(first["ok"], true);
    assert_eq!(counts(&first, "acme-jamf"), (2500, 2500, 0, 0));
    assert_eq!(counts(&first, "globex-intune"), (1200, 1200, 0, 0));
    let max = emu.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=5).contains(&max),
        "Jamf pages in parallel, never more than 5 at once (saw {max})"
    );
    assert!(
        emu.with(|s| s.tokens_issued) > 2,
        "tokens renewed when they expired"
    );
    assert!(
        emu.with(|s| s.violations.is_empty()),
        "{:?}",
        emu.with(|s| s.violations.clone())
    );

    let second = mdm_sync(&cfg);
    assert_eq!(counts(&second, "acme-jamf"), (2500, 0, 2500, 0));
    assert_eq!(counts(&second, "globex-intune"), (1200, 0, 1200, 0));

    emu.with(|s| {
        for c in s.computers.iter_mut().take(10) {
            c["general"]["name"] =
                format!("{}-renamed", c["general"]["name"].as_str().unwrap()).into();
        }
        s.computers.truncate(2495);
    });
    let third = mdm_sync(&cfg);
    assert_eq!(counts(&third, "acme-jamf"), (2495, 10, 2485, 5));
    assert_eq!(counts(&third, "globex-intune"), (1200, 0, 1200, 0));
}

fn decision_for(id: &str, endpoint: &str) -> String {
    json!({"type":"decision","event_id":id,"tenant_id":"acme","endpoint_id":endpoint,"risk":"high","decision":"block"}).to_string()
}

#[test]
fn a_running_gateway_uses_each_sync_and_push_at_once_and_survives_the_api_being_down() {
    let mut emu = MdmEmulator::start(300, 50);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu.url(), "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let send = |gw: &Gateway, id: &str, endpoint: &str| -> Value {
        assert_eq!(
            post_ndjson(&c, gw, "admin-token", decision_for(id, endpoint)).0,
            200
        );
        wait_for_event(dir.path(), id)
            .into_iter()
            .find(|e| e["event_id"] == id)
            .unwrap()
    };
    let mut n = 0;
    wait_until("the first sync is in use", || {
        n += 1;
        send(&gw, &format!("w-{n}"), "ep-7")["enrichment"]["status"] == "matched"
    });
    // ep-7 is in Sales; move it to Engineering: the next sync (refresh_interval 1s) applies it.
    emu.with(|s| s.computers[7]["userAndLocation"]["departmentId"] = "3".into());
    wait_until("the change is in use without a restart", || {
        n += 1;
        send(&gw, &format!("w-{n}"), "ep-7")["context"]["fleet"]["id"] == "eng"
    });

    // A pushed snapshot is in use as soon as the PUT answers.
    let snapshot = json!({"value": [{"id": "p-1", "deviceName": "PUSHED-1", "serialNumber": "PSN1",
        "operatingSystem": "Windows", "managementAgent": "mdm", "complianceState": "compliant"}]});
    let resp = c
        .put(gw.url("/v1/mdm/acme-pushed"))
        .bearer_auth("admin-token")
        .json(&snapshot)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().unwrap();
    assert_eq!(
        (body["imported"].as_u64(), body["upserted"].as_u64()),
        (Some(1), Some(1))
    );
    let line = json!({"type":"decision","event_id":"pushed","tenant_id":"acme","endpoint_id":"x","device_serial":"PSN1","risk":"low","decision":"allow"});
    assert_eq!(post_ndjson(&c, &gw, "admin-token", line.to_string()).0, 200);
    let e = wait_for_event(dir.path(), "pushed")
        .into_iter()
        .find(|e| e["event_id"] == "pushed")
        .unwrap();
    assert_eq!(e["context"]["endpoint"]["hostname"], "PUSHED-1");
    // Pushes need an admin token, a known provider and a valid snapshot.
    let put = |token: &str, provider: &str, body: &str| {
        c.put(gw.url(&format!("/v1/mdm/{provider}")))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put("acme-token", "acme-pushed", "{}"), 403);
    assert_eq!(put("admin-token", "nope", "{}"), 404);
    assert_eq!(put("admin-token", "acme-pushed", "{\"results\": 1}"), 400);

    let ep: Value = c
        .get(gw.url("/v1/endpoints/acme/ep-7"))
        .bearer_auth("admin-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ep["context"]["endpoint"]["department"], "Engineering");
    assert_eq!(
        c.get(gw.url("/v1/endpoints/acme/nobody"))
            .bearer_auth("admin-token")
            .send()
            .unwrap()
            .status(),
        404
    );
    assert!(gw.terminate().success());

    // The MDM API is down at the next start: the persisted snapshots serve, /v1/health says so.
    emu.stop();
    let gw = Gateway::start(&cfg);
    let e = send(&gw, "after-restart", "ep-7");
    assert_eq!(e["context"]["fleet"]["id"], "eng");
    let mut health = Value::Null;
    wait_until("the failed sync shows in /v1/health", || {
        health = gw.health();
        health["mdm"]["acme-jamf"]["last_error"].is_string()
    });
    let jamf = &health["mdm"]["acme-jamf"];
    assert_eq!(jamf["endpoints"], 300);
    assert!(jamf["snapshot"].is_string());
    assert_eq!(jamf["source"], "api");
    assert!(
        jamf["last_error"].as_str().unwrap().contains("connect")
            || jamf["last_error"].as_str().unwrap().contains("error"),
        "{jamf}"
    );
    assert_eq!(health["status"], "degraded");
}

fn alerts(dir: &std::path::Path) -> Vec<Value> {
    read_ndjson(&dir.join("alerts.ndjson"))
}

#[test]
fn a_stale_endpoint_is_alerted_once_cleared_by_a_checkin_and_not_realerted_after_a_restart() {
    let emu = MdmEmulator::start(10, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu.url(), "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let checkin =
        json!({"type":"checkin","tenant_id":"acme","endpoint_id":"ep-3","status":"healthy"})
            .to_string();
    assert_eq!(post_ndjson(&c, &gw, "acme-token", checkin.clone()).0, 200);
    wait_until("one stale alert", || !alerts(dir.path()).is_empty());
    std::thread::sleep(Duration::from_secs(3)); // more sweeps: no second alert
    let a = alerts(dir.path());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["title"], "endpoint_stale");
    assert_eq!(a[0]["endpoint_id"], "ep-3");
    assert_eq!(a[0]["context"]["health"]["status"], "stale");
    // Every sink whose condition matches got it, the others not.
    assert_eq!(
        read_out(dir.path())
            .iter()
            .filter(|e| e["title"] == "endpoint_stale")
            .count(),
        1
    );
    assert!(std::fs::read_to_string(dir.path().join("decisions.ndjson"))
        .unwrap_or_default()
        .is_empty());
    let health: Value = gw.health();
    assert_eq!(health["checkins"]["stale"], 1);

    // A restart does not re-alert.
    assert!(gw.terminate().success());
    let gw = Gateway::start(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        alerts(dir.path()).len(),
        1,
        "no alert again after the restart"
    );

    // Checking in clears it: when it goes stale again, it is alerted again.
    assert_eq!(post_ndjson(&c, &gw, "acme-token", checkin).0, 200);
    wait_until("a second alert after the next staleness", || {
        alerts(dir.path()).len() == 2
    });
}

fn metric(gw: &Gateway, name: &str) -> f64 {
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn checkin_health_runs_on_the_gateways_clock_and_made_up_endpoints_are_bounded_and_never_alerted() {
    let emu = MdmEmulator::start(10, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu.url(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "stale_after = \"2s\"",
        "stale_after = \"2s\"\nmax_unknown_endpoints = 5",
    );
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);
    wait_until("the first sync is in use", || {
        gw.health()["mdm"]["endpoints"] == 10
    });
    let c = client();
    let checkin = |endpoint: &str, time: &str| {
        json!({"type":"checkin","tenant_id":"acme","endpoint_id":endpoint,"time":time}).to_string()
    };

    // A time past the year range once converted to UTC: 400 naming the field, no panic.
    let (status, body, _) = post_ndjson(
        &c,
        &gw,
        "acme-token",
        checkin("ep-4", "9999-12-31T23:59:59-23:59"),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["details"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("field `time`: out of range"), "{body}");

    // A check-in dated 2999 counts as received now: the endpoint turns stale and is alerted.
    let before = time::OffsetDateTime::now_utc();
    assert_eq!(
        post_ndjson(
            &c,
            &gw,
            "acme-token",
            checkin("ep-3", "2999-01-01T00:00:00Z")
        )
        .0,
        200
    );
    let held: Value = c
        .get(gw.url("/v1/endpoints/acme/ep-3"))
        .bearer_auth("admin-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let last = held["context"]["health"]["last_checkin"].as_str().unwrap();
    let last =
        time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        (last - before).whole_seconds().abs() < 60,
        "health uses the receive time, not the event's: {held}"
    );

    // Fifty made-up endpoints, each checking in once with an old time.
    let made_up: String = (0..50)
        .map(|i| {
            format!(
                "{}\n",
                checkin(&format!("made-up-{i}"), "2020-01-01T00:00:00Z")
            )
        })
        .collect();
    assert_eq!(post_ndjson(&c, &gw, "acme-token", made_up).0, 200);

    wait_until("the stale alert of ep-3", || {
        alerts(dir.path())
            .iter()
            .any(|a| a["endpoint_id"] == "ep-3")
    });
    std::thread::sleep(Duration::from_secs(4)); // more sweeps, all past stale_after
    let a = alerts(dir.path());
    assert_eq!(a.len(), 1, "only ep-3, never a made-up endpoint: {a:?}");
    assert!(!a[0]["last_checkin"].as_str().unwrap().starts_with("2999"));
    // Only 5 made-up endpoints are held; 45 were evicted.
    assert_eq!(metric(&gw, "thoth_checkins_unknown_evicted_total"), 45.0);
    let health = gw.health();
    assert_eq!(health["tasks"], json!({}), "no background task restarted");
}
