//! End-to-end: config reload on SIGHUP and `POST /v1/reload` swaps sinks, routes, tokens and
//! the transform without losing an accepted event; a broken config is refused with
//! `validate`'s errors and the running config goes on.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use support::*;

/// Posts batches of acme decisions until told to stop; returns the acknowledged ids.
fn steady_load(gw: &Gateway, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let url = gw.url("/v1/events");
    std::thread::spawn(move || {
        let c = client();
        let mut acked = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let ids: Vec<String> = (0..20).map(|i| format!("load-{n}-{i}")).collect();
            n += 1;
            let body: String = ids
                .iter()
                .map(|id| decision(id, "acme", "ep-1001") + "\n")
                .collect();
            let resp = c
                .post(&url)
                .bearer_auth("acme-token")
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .unwrap();
            match resp.status().as_u16() {
                200 => acked.extend(ids),
                503 => std::thread::sleep(std::time::Duration::from_millis(50)),
                s => panic!("unexpected {s}: {}", resp.text().unwrap_or_default()),
            }
        }
        acked
    })
}

fn reloads(gw: &Gateway, outcome: &str) -> u64 {
    let needle = format!("thoth_config_reloads_total{{outcome=\"{outcome}\"}} ");
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn post_reload(gw: &Gateway, token: &str) -> (u16, Value) {
    let resp = client()
        .post(gw.url("/v1/reload"))
        .bearer_auth(token)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

fn ids(path: &Path) -> HashSet<String> {
    read_ndjson(path)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn second_sink(dir: &Path) -> String {
    format!(
        r#"
[sinks.second]
type = "file"
path = "{}"
tenants = ["acme"]
condition = '.risk == "high"'
"#,
        dir.join("second.ndjson").display()
    )
}

#[test]
fn sighup_adds_a_sink_and_a_broken_config_is_refused_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", "")).unwrap();
    let gw = Gateway::start(&cfg);
    let second = dir.path().join("second.ndjson");

    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&gw, stop.clone());
    post_all(
        &gw,
        "acme-token",
        &[decision("before-reload", "acme", "ep-1001")],
    );
    wait_for_event(dir.path(), "before-reload");

    // A valid config with one more sink: SIGHUP applies it while events flow.
    std::fs::write(
        &cfg,
        config_text(dir.path(), "", "", &second_sink(dir.path())),
    )
    .unwrap();
    gw.signal("HUP");
    wait_until("the reload is applied", || reloads(&gw, "ok") == 1);
    assert!(
        gw.health()["sinks"]["second"].is_object(),
        "{}",
        gw.health()
    );
    post_all(
        &gw,
        "acme-token",
        &[decision("after-reload", "acme", "ep-1001")],
    );
    wait_until("the new sink receives new events", || {
        ids(&second).contains("after-reload")
    });
    assert!(
        !ids(&second).contains("before-reload"),
        "a new sink starts at the end of the log"
    );

    // A broken config (VRL error, and a restart-only key): refused, old sinks go on.
    let broken = config_text(dir.path(), "", "", &second_sink(dir.path()))
        .replace("condition = '.risk == \"high\"'", "condition = '.risk == '");
    std::fs::write(&cfg, broken).unwrap();
    gw.signal("HUP");
    wait_until("the reload is refused", || reloads(&gw, "refused") == 1);
    // The metric moves before the log line reaches this process: wait for the line.
    wait_until("the refusal is logged", || {
        gw.logs().contains("reload refused")
    });
    let (status, body) = post_reload(&gw, "admin-token");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_config");
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["sinks.second.condition"], "{body}");
    // The same errors as `validate`.
    let validate = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let validate: Value = serde_json::from_slice(&validate.stdout).unwrap();
    assert_eq!(
        validate["errors"][0]["message"],
        body["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "sinks.second.condition")
            .unwrap()["message"]
    );
    // A valid config that changes what only a restart applies: refused, naming the key.
    let moved = config_text(
        dir.path(),
        "max_bytes = \"300MiB\"",
        "",
        &second_sink(dir.path()),
    );
    std::fs::write(&cfg, moved).unwrap();
    let (status, body) = post_reload(&gw, "admin-token");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["path"], "wal", "{body}");
    post_all(
        &gw,
        "acme-token",
        &[decision("after-refusal", "acme", "ep-1001")],
    );
    wait_for_event(dir.path(), "after-refusal");
    wait_until("the old second sink still runs", || {
        ids(&second).contains("after-refusal")
    });

    // Only admins reload.
    assert_eq!(post_reload(&gw, "acme-token").0, 403);
    assert_eq!(post_reload(&gw, "nope").0, 401);

    // Back to one sink, and the first sink changed (a condition): removed and restarted.
    let changed = config_text(dir.path(), "", "condition = '.risk != \"low\"'", "");
    std::fs::write(&cfg, changed).unwrap();
    let (status, body) = post_reload(&gw, "admin-token");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sinks"]["removed"], serde_json::json!(["second"]));
    assert_eq!(body["sinks"]["restarted"], serde_json::json!(["out"]));
    assert!(!dir.path().join("data/wal/cursors/second").exists());
    assert!(gw.health()["sinks"]["second"].is_null());

    stop.store(true, Ordering::Relaxed);
    let acked = load.join().unwrap();
    assert!(acked.len() > 100, "the load ran ({} events)", acked.len());
    post_all(&gw, "acme-token", &[decision("last", "acme", "ep-1001")]);
    wait_for_event(dir.path(), "last");
    let out = ids(&out_path(dir.path()));
    let lost: Vec<&String> = acked.iter().filter(|id| !out.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(reloads(&gw, "ok"), 2);
}

#[test]
fn reload_rotates_tokens_and_tenants_and_the_default_cannot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", "")).unwrap();
    let gw = Gateway::start(&cfg);
    let c = client();
    let rotated = config_text(dir.path(), "", "", "")
        .replace("token = \"acme-token\"", "token = \"acme-token-2\"");
    std::fs::write(&cfg, rotated).unwrap();
    let (status, body) = post_reload(&gw, "admin-token");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_changed"], true);
    let line = decision("rotated", "acme", "ep-1001");
    assert_eq!(post_ndjson(&c, &gw, "acme-token", line.clone()).0, 401);
    assert_eq!(post_ndjson(&c, &gw, "acme-token-2", line).0, 200);
    wait_for_event(dir.path(), "rotated");

    let default_dir = tempfile::tempdir().unwrap();
    let default = Gateway::start_default(default_dir.path()).unwrap();
    let resp = client()
        .post(default.url("/v1/reload"))
        .bearer_auth("admin-demo-token")
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "no_config_file");
}

#[test]
fn a_reloaded_fleet_rule_reindexes_the_kept_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    let text = config_text(dir.path(), "", "", "");
    std::fs::write(&cfg, &text).unwrap();
    let gw = Gateway::start(&cfg);
    let fleet_of = |id: &str| {
        let line = serde_json::json!({"type":"decision","tenant_id":"acme","endpoint_id":"ep-7f3a",
            "risk":"low","decision":"allow","event_id":id});
        post_all(&gw, "acme-token", &[line.to_string()]);
        let out = out_path(dir.path());
        wait_until("the probe is written", || ids(&out).contains(id));
        let events = read_ndjson(&out);
        let e = events.iter().find(|e| e["event_id"] == id).unwrap();
        e["context"]["fleet"]["id"].clone()
    };
    assert_eq!(fleet_of("before"), "eng-macs");
    // The rule now names another fleet; the snapshot file itself is unchanged.
    std::fs::write(
        &cfg,
        text.replace("id = \"eng-macs\"", "id = \"eng-laptops\""),
    )
    .unwrap();
    let (status, body) = post_reload(&gw, "admin-token");
    assert_eq!(status, 200, "{body}");
    assert_eq!(fleet_of("after"), "eng-laptops");
}
