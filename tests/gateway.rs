//! End-to-end tests against the real binary: HTTP ingest → enrichment → WAL → file sink.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::*;

const DEFAULT_WAL: &str = "max_bytes = \"64MiB\"";

fn setup(wal: &str, sink_extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), wal, sink_extra, "")).unwrap();
    (dir, cfg)
}

#[test]
fn two_tenants_are_enriched_from_jamf_and_intune_and_delivered_once() {
    let (dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let c = client();

    // acme (Jamf): a check-in then decisions matched by endpoint id (extension attribute),
    // serial and hostname; one unknown endpoint.
    let acme = [
        json!({"type":"checkin","event_id":"a-checkin","tenant_id":"acme","endpoint_id":"ep-7f3a",
               "time":"2026-11-28T09:59:10Z","agent_version":"0.2.7","os":"macOS","status":"healthy"}),
        json!({"type":"decision","event_id":"a-by-id","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme",
               "endpoint_id":"ep-7f3a","device_serial":"C02XK1ZJMD6R","hostname":"mbp-jdoe","user":"jdoe@acme.com",
               "surface":"mcp","action":{"kind":"tool_call","tool":"github.create_pull_request","mcp_server":"github",
               "target":"https://api.github.com"},"risk":"high","decision":"block",
               "policy":{"id":"shadow-ai-default","version":3,"rule":"shadow_high"},"compliance_profile":"soc2",
               "reason":"unsanctioned MCP server","proxy_version":"0.2.7"}),
        json!({"type":"decision","event_id":"a-by-serial","tenant_id":"acme","endpoint_id":"ep-unknown-1",
               "device_serial":"FVFHX2K1Q6L4","risk":"low","decision":"allow"}),
        json!({"type":"decision","event_id":"a-by-host","tenant_id":"acme","endpoint_id":"ep-unknown-2",
               "hostname":"IMAC-SALES-07","risk":"medium","decision":"step_up"}),
        json!({"type":"decision","event_id":"a-unmatched","tenant_id":"acme","endpoint_id":"ep-nobody",
               "hostname":"GLX-LT-0042","risk":"critical","decision":"block"}),
    ];
    let body: String = acme.iter().map(|e| format!("{e}\n")).collect();
    let (status, resp, _) = post_ndjson(&c, &gw, "acme-token", body);
    assert_eq!((status, resp), (200, json!({"accepted": 5})));

    // globex (Intune), as a JSON array; no event_id: the gateway assigns one.
    let globex = json!([
        {"type":"checkin","tenant_id":"globex","endpoint_id":"glx-1","hostname":"glx-lt-0042","time":"2026-11-28T09:59:10Z"},
        {"type":"decision","tenant_id":"globex","endpoint_id":"glx-1","device_serial":"9XK2M73","risk":"critical","decision":"block","marker":"g-serial"},
        {"type":"alert","tenant_id":"globex","severity":"high","title":"policy drift","marker":"g-alert"}
    ]);
    let resp = c
        .post(gw.url("/v1/events"))
        .bearer_auth("globex-token")
        .json(&globex)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);

    let mut out = Vec::new();
    wait_until("all 8 events are in the file sink", || {
        out = read_out(dir.path());
        out.len() >= 8
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    out = read_out(dir.path());
    assert_eq!(out.len(), 8, "each event exactly once");
    let ids: HashSet<&str> = out
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 8, "distinct event ids");
    let by_id: HashMap<&str, &Value> = out
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap(), e))
        .collect();

    // The documented enriched example, field for field; check-in health runs on the gateway's clock.
    let e = by_id["a-by-id"];
    let last_checkin = e["context"]["health"]["last_checkin"].as_str().unwrap();
    let last_checkin =
        time::OffsetDateTime::parse(last_checkin, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(
        (time::OffsetDateTime::now_utc() - last_checkin).whole_minutes() < 5,
        "the receive time, not the check-in's own 2026-11-28T09:59:10Z: {last_checkin}"
    );
    let mut context = e["context"].clone();
    context["health"]["last_checkin"] = "(receive time)".into();
    assert_eq!(
        context,
        json!({
            "tenant": {"id":"acme","name":"Acme Corp","compliance_profile":"soc2"},
            "fleet": {"id":"eng-macs","name":"Engineering Macs"},
            "endpoint": {"id":"ep-7f3a","hostname":"mbp-jdoe","serial":"C02XK1ZJMD6R","os":"macOS",
                         "os_version":"15.1","owner":"jdoe@acme.com","department":"Engineering",
                         "site":"Berlin","model":"MacBook Pro (14-inch, 2023)",
                         "mdm":{"provider":"jamf","device_id":"412","managed":true,
                                "last_sync":"2026-11-28T09:55:00Z"}},
            "health": {"status":"healthy","last_checkin":"(receive time)"}
        })
    );
    assert_eq!(e["enrichment"]["status"], "matched");
    assert_eq!(e["enrichment"]["matched_on"], "endpoint_id");
    assert!(e["enrichment"]["snapshot"].as_str().unwrap().ends_with('Z'));
    // Input fields come through unchanged.
    assert_eq!(
        e["policy"],
        json!({"id":"shadow-ai-default","version":3,"rule":"shadow_high"})
    );
    assert_eq!(e["time"], "2026-11-28T10:00:00.120Z");

    assert_eq!(by_id["a-by-serial"]["enrichment"]["matched_on"], "serial");
    assert_eq!(
        by_id["a-by-serial"]["context"]["endpoint"]["hostname"],
        "mba-asmith"
    );
    assert_eq!(by_id["a-by-serial"]["context"]["health"]["status"], "never");
    assert_eq!(by_id["a-by-host"]["enrichment"]["matched_on"], "hostname");
    assert!(
        by_id["a-by-host"]["context"].get("fleet").is_none(),
        "Sales is in no fleet"
    );

    // A hostname of another tenant's device does not match: tenants never mix.
    let u = by_id["a-unmatched"];
    assert_eq!(u["enrichment"], json!({"status":"unmatched"}));
    assert_eq!(u["context"]["tenant"]["id"], "acme");
    assert!(u["context"].get("endpoint").is_none());

    let g = out.iter().find(|e| e["marker"] == "g-serial").unwrap();
    assert_eq!(
        g["context"]["tenant"],
        json!({"id":"globex","name":"Globex Inc"})
    );
    assert_eq!(
        g["context"]["fleet"],
        json!({"id":"globex-windows","name":"Globex Windows"})
    );
    let ep = &g["context"]["endpoint"];
    assert_eq!(ep["hostname"], "GLX-LT-0107");
    assert_eq!(ep["owner"], "tnguyen@globex.example");
    assert_eq!(ep["category"], "Office Laptops");
    assert_eq!(ep["mdm"]["provider"], "intune");
    assert_eq!(ep["mdm"]["compliant"], false);
    assert_eq!(g["enrichment"]["matched_on"], "serial");
    assert_eq!(uuid_version(g["event_id"].as_str().unwrap()), 7);

    let alert = out.iter().find(|e| e["marker"] == "g-alert").unwrap();
    assert_eq!(alert["enrichment"]["status"], "unmatched");
    assert!(
        alert["time"].as_str().unwrap().ends_with('Z'),
        "time defaults to receive time"
    );

    // Health and metrics reflect it.
    let health: Value = gw.health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["sinks"]["out"]["status"], "healthy");
    assert_eq!(health["sinks"]["out"]["queued_events"], 0);
    assert_eq!(health["mdm"]["endpoints"], 5);
    assert_eq!(health["checkins"]["healthy"], 2);
    let metrics = gw.metrics();
    for line in [
        "thoth_events_received_total{source=\"http\",type=\"decision\"} 5",
        "thoth_events_received_total{source=\"http\",type=\"checkin\"} 2",
        "thoth_sink_events_total{outcome=\"delivered\",sink=\"out\"} 8",
        "thoth_enrichment_total{status=\"unmatched\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(metrics.contains("thoth_wal_bytes "));
    assert_eq!(c.get(gw.url("/ready")).send().unwrap().status(), 200);
    assert_eq!(c.get(gw.url("/health")).send().unwrap().status(), 200);

    // `thoth-gateway health`: exit 0 when ok, the report on stdout with --json.
    let out = std::process::Command::new(BIN)
        .args(["health", "--json", "--url", &format!("http://{}", gw.addr)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "ok");

    // SIGTERM: a clean stop.
    let addr = gw.addr.clone();
    assert!(gw.terminate().success());
    let out = std::process::Command::new(BIN)
        .args(["health", "--json", "--url", &format!("http://{addr}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "unreachable is not ok");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "unreachable");
}

fn uuid_version(id: &str) -> u32 {
    u32::from_str_radix(&id[14..15], 16).unwrap()
}

/// Posts a marker event and waits for it: everything accepted before it has been delivered.
fn marker(dir: &std::path::Path, gw: &Gateway, id: &str) -> Vec<Value> {
    let (s, _, _) = post_ndjson(&client(), gw, "admin-token", decision(id, "acme", "ep-m"));
    assert_eq!(s, 200);
    wait_for_event(dir, id)
}

#[test]
fn a_token_of_one_tenant_cannot_submit_for_another() {
    let (dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let body = format!(
        "{}\n{}\n",
        decision("own", "acme", "ep-1"),
        decision("spoofed", "globex", "ep-1")
    );
    let (status, resp, _) = post_ndjson(&c, &gw, "acme-token", body);
    assert_eq!(status, 403);
    assert_eq!(resp["error"], "forbidden_tenant");
    assert_eq!(resp["details"][0]["index"], 1);

    // An admin token may submit for any listed tenant, not for an unlisted one.
    let (status, resp, _) = post_ndjson(&c, &gw, "admin-token", decision("x", "initech", "ep-1"));
    assert_eq!(status, 400);
    assert!(resp["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("initech"));

    let out = marker(dir.path(), &gw, "marker-1");
    assert!(
        out.iter()
            .all(|e| e["event_id"] != "own" && e["event_id"] != "spoofed" && e["event_id"] != "x"),
        "nothing of a refused request is written: {out:?}"
    );
}

#[test]
fn a_malformed_line_rejects_the_whole_batch_and_names_the_line() {
    let (dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let body = format!(
        "{}\n\n{}\n{{\"type\":\"decision\",\"tenant_id\":\"acme\"\n{}\n{}\n",
        decision("ok-0", "acme", "ep-1"),
        decision("ok-2", "acme", "ep-1"),
        decision("ok-4", "acme", "ep-1"),
        r#"{"type":"decision","tenant_id":"acme","endpoint_id":"e","risk":"severe","decision":"block"}"#,
    );
    let (status, resp, _) = post_ndjson(&c, &gw, "acme-token", body);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"], "invalid_events");
    let details = resp["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{resp}");
    assert_eq!(details[0]["index"], 3, "blank lines count");
    assert!(details[0]["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert_eq!(details[1]["index"], 5);
    assert_eq!(
        details[1]["message"],
        "field `risk`: must be one of low, medium, high, critical (got \"severe\")"
    );

    let out = marker(dir.path(), &gw, "after-bad-batch");
    assert_eq!(out.len(), 1, "only the marker was written: {out:?}");
}

#[test]
fn http_errors_are_precise() {
    let (_dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let good = decision("g1", "acme", "ep-1");
    let send = |token: Option<&str>, ctype: &str, encoding: Option<&str>, body: Vec<u8>| {
        let mut req = c
            .post(gw.url("/v1/events"))
            .header("content-type", ctype)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap_or(Value::Null);
        (status, body["error"].as_str().unwrap_or("").to_string())
    };
    let nd = "application/x-ndjson";
    assert_eq!(
        send(None, nd, None, good.clone().into()),
        (401, "unauthorized".into())
    );
    assert_eq!(
        send(Some("wrong"), nd, None, good.clone().into()),
        (401, "unauthorized".into())
    );
    assert_eq!(
        send(Some("acme-token"), "text/plain", None, good.clone().into()),
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        send(Some("acme-token"), nd, Some("br"), good.clone().into()),
        (415, "unsupported_content_encoding".into())
    );
    assert_eq!(
        send(Some("acme-token"), nd, None, vec![b' '; 70 * 1024]),
        (413, "body_too_large".into())
    );

    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(
        send(Some("acme-token"), nd, Some("gzip"), gz(good.as_bytes())),
        (200, "".into())
    );
    // A gzip bomb: a small body that inflates past the limit.
    assert_eq!(
        send(
            Some("acme-token"),
            nd,
            Some("gzip"),
            gz(&vec![b' '; 8 << 20])
        ),
        (413, "body_too_large".into())
    );
    let mut cut = gz(good.as_bytes());
    cut.truncate(cut.len() / 2);
    assert_eq!(
        send(Some("acme-token"), nd, Some("gzip"), cut),
        (400, "invalid_gzip".into())
    );
    let deep = format!(
        r#"{{"type":"alert","tenant_id":"acme","d":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(
        send(Some("acme-token"), nd, None, deep.into()),
        (400, "invalid_events".into())
    );
    assert_eq!(
        send(
            Some("acme-token"),
            "application/json",
            None,
            b"[1,".to_vec()
        ),
        (400, "invalid_body".into())
    );
    // Still serving.
    assert_eq!(
        send(Some("acme-token"), "application/json", None, good.into()),
        (200, "".into())
    );
}

#[test]
fn nothing_acknowledged_is_lost_across_kill_9() {
    let (dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let acked = acked.clone();
        let stop = stop.clone();
        let url = gw.url("/v1/events");
        std::thread::spawn(move || {
            let c = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..25).map(|i| format!("k-{n}-{i}")).collect();
                let body: String = ids
                    .iter()
                    .map(|id| decision(id, "acme", "ep-7f3a") + "\n")
                    .collect();
                n += 1;
                match c
                    .post(&url)
                    .bearer_auth("acme-token")
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the gateway is gone
                }
            }
        })
    };
    wait_until("some batches are acknowledged", || {
        acked.lock().unwrap().len() >= 2500
    });
    gw.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    let gw = Gateway::start(&cfg);
    wait_until(
        "every acknowledged event is delivered after the restart",
        || {
            let seen: HashSet<String> = read_out_after_crashes(dir.path(), 1)
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect();
            acked.is_subset(&seen)
        },
    );
    // Duplicates are allowed but keep their event id; at most the one write the kill cut
    // short left a torn line, and its events are there whole.
    let out = read_out_after_crashes(dir.path(), 1);
    for e in &out {
        let id = e["event_id"].as_str().unwrap();
        assert!(id.starts_with("k-"), "unexpected event {e}");
        assert_eq!(e["context"]["endpoint"]["id"], "ep-7f3a");
    }
    drop(gw);
}

#[test]
fn a_full_wal_answers_503_with_bounded_memory_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let out = out_path(dir.path());
    // The sink's path is a directory: appending fails even for root.
    std::fs::create_dir_all(&out).unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(
            dir.path(),
            "max_bytes = \"256KiB\"\nsegment_bytes = \"16KiB\"",
            "[sinks.out.retry]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"",
            "",
        ),
    )
    .unwrap();
    let gw = Gateway::start(&cfg);
    // The heap is not backed by transparent huge pages (they kept ~20 MiB more resident).
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    let c = client();
    let mut accepted = Vec::new();
    let mut n = 0;
    let retry_after = loop {
        let ids: Vec<String> = (0..20).map(|i| format!("f-{n}-{i}")).collect();
        n += 1;
        let body: String = ids
            .iter()
            .map(|id| decision(id, "acme", "ep-7f3a") + "\n")
            .collect();
        let (status, resp, headers) = post_ndjson(&c, &gw, "acme-token", body);
        match status {
            200 => accepted.extend(ids),
            503 => {
                assert_eq!(resp["error"], "wal_full");
                break headers
                    .get("retry-after")
                    .expect("Retry-After")
                    .to_str()
                    .unwrap()
                    .to_string();
            }
            other => panic!("unexpected {other}: {resp}"),
        }
        assert!(n < 10_000, "the WAL never filled");
    };
    assert_eq!(retry_after, "1");
    let health: Value = gw.health();
    assert_ne!(health["status"], "ok");
    assert!(health["sinks"]["out"]["queued_events"].as_u64().unwrap() >= accepted.len() as u64);
    assert!(health["sinks"]["out"]["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot write"));

    // Keep pushing: every request is refused, and memory does not grow with them. The first
    // refusals warm the allocator up to its working set (the gateway returns freed memory to
    // the system after loading MDM data), so growth is measured after them.
    let big: String = (0..200)
        .map(|i| decision(&format!("r-{i}"), "acme", "ep-7f3a") + "\n")
        .collect();
    for _ in 0..100 {
        let (status, _, _) = post_ndjson(&c, &gw, "acme-token", big.clone());
        assert_eq!(status, 503);
    }
    let rss_before = gw.rss_kib();
    for _ in 0..300 {
        let (status, _, _) = post_ndjson(&c, &gw, "acme-token", big.clone());
        assert_eq!(status, 503);
    }
    let rss_after = gw.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB while refusing"
    );

    // The sink recovers: everything accepted is delivered, and ingest accepts again.
    std::fs::remove_dir(&out).unwrap();
    wait_until("all accepted events are delivered", || {
        read_out(dir.path()).len() >= accepted.len()
    });
    let delivered: Vec<String> = read_out(dir.path())
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, accepted, "in order, once, none missing");
    wait_until("ingest accepts again", || {
        post_ndjson(&c, &gw, "acme-token", decision("after", "acme", "ep-7f3a")).0 == 200
    });
    wait_for_event(dir.path(), "after");
}

#[test]
fn validate_lists_every_mistake_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "max_bytes = \"4GB2\"",
        "[sinks.out.batch]\nmax_events = 0",
        "",
    )
    .replace(
        "name = \"Acme Corp\"",
        "name = \"Acme Corp\"\nregion = \"eu\"",
    );
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, text).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "tenants[0].region",
            "wal.max_bytes",
            "sinks.out.batch.max_events"
        ]
    );

    let text_out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(text_out.status.code(), Some(2));
    let text = String::from_utf8(text_out.stdout).unwrap();
    assert!(text.contains("3 error(s)"), "{text}");
    assert!(
        text.contains("wal.max_bytes: invalid size \"4GB2\""),
        "{text}"
    );

    // The same config, corrected, is valid; secrets never appear in the output.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config_text(dir.path(), DEFAULT_WAL, "", "")).unwrap();
    let ok = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(!stdout.contains("acme-token"));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["summary"]["mdm_endpoints"], 5);
    // Its tokens are short: valid, with a warning naming each (never the token).
    let warned: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        warned,
        [
            "api.tokens[0].token",
            "api.tokens[1].token",
            "api.tokens[2].token"
        ]
    );

    // A WAL whose segments leave no room, and a token from an empty variable: refused.
    let risky = dir.path().join("risky.toml");
    let text = config_text(
        dir.path(),
        "max_bytes = \"64MiB\"\nsegment_bytes = \"64MiB\"",
        "",
        "",
    )
    .replace(
        "token = \"admin-token\"",
        "token = \"${THOTH_TEST_EMPTY_ADMIN_TOKEN}\"",
    );
    std::fs::write(&risky, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&risky)
        .env("THOTH_TEST_EMPTY_ADMIN_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["api.tokens[2].token", "wal.segment_bytes"],
        "{report}"
    );
}

#[test]
fn validate_reports_a_broken_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), DEFAULT_WAL, "", "")).unwrap();
    std::fs::write(dir.path().join("globex-intune.json"), "{\"results\": []}").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"][0]["path"], "mdm.providers[1].file");
}

#[test]
fn a_changed_snapshot_is_reloaded_and_a_broken_one_keeps_the_previous() {
    let (dir, cfg) = setup(DEFAULT_WAL, "");
    let gw = Gateway::start(&cfg);
    let c = client();
    let snapshot = dir.path().join("globex-intune.json");
    let send = |id: &str| {
        let line = json!({"type":"checkin","event_id":id,"tenant_id":"globex","endpoint_id":"glx-9","device_serial":"NEW-SERIAL-1"});
        assert_eq!(
            post_ndjson(&c, &gw, "globex-token", line.to_string()).0,
            200
        );
        let out = wait_for_event(dir.path(), id);
        out.into_iter().find(|e| e["event_id"] == id).unwrap()
    };
    assert_eq!(send("before")["enrichment"]["status"], "unmatched");

    // A new device appears in the snapshot.
    let mut snap: Value =
        serde_json::from_str(&std::fs::read_to_string(&snapshot).unwrap()).unwrap();
    snap["value"][0]["serialNumber"] = "NEW-SERIAL-1".into();
    snap["value"][0]["deviceName"] = "GLX-NEW".into();
    std::fs::write(&snapshot, snap.to_string()).unwrap();
    let mut n = 0;
    wait_until("the new snapshot is used", || {
        n += 1;
        send(&format!("reload-{n}"))["enrichment"]["status"] == "matched"
    });

    // A broken snapshot is refused; the previous one stays in use.
    std::fs::write(&snapshot, "{ not json").unwrap();
    wait_until("the broken snapshot is noticed", || {
        gw.logs().contains("keeping the previous one")
    });
    let e = send("after-broken");
    assert_eq!(e["enrichment"]["status"], "matched");
    assert_eq!(e["context"]["endpoint"]["hostname"], "GLX-NEW");
}

#[test]
fn the_example_config_is_valid_and_its_tests_pass() {
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .env("THOTH_HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
        .env("THOTH_ES_API_KEY", "a2V5OnNlY3JldA==")
        .env("THOTH_SENTINEL_CLIENT_SECRET", "secret")
        .env("THOTH_KAFKA_PASSWORD", "secret")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        !text.contains("warning"),
        "the example has no guessable token or other warning: {text}"
    );
    let tests = std::process::Command::new(BIN)
        .args(["test", "--config"])
        .env("THOTH_HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
        .env("THOTH_ES_API_KEY", "a2V5OnNlY3JldA==")
        .env("THOTH_SENTINEL_CLIENT_SECRET", "secret")
        .env("THOTH_KAFKA_PASSWORD", "secret")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tests.stdout);
    assert_eq!(tests.status.code(), Some(0), "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
}

#[test]
fn the_built_in_default_runs_from_any_directory() {
    // The README's quick start, in a fresh directory without the repository's examples/.
    let dir = tempfile::tempdir().unwrap();
    let gw = match Gateway::start_default(dir.path()) {
        Ok(gw) => gw,
        Err(logs) if logs.contains("Address already in use") => {
            eprintln!(
                "port 8686 is taken on this machine; the built-in default cannot be tested here"
            );
            return;
        }
        Err(logs) => panic!("the built-in default did not start:\n{logs}"),
    };
    assert_eq!(gw.addr, "127.0.0.1:8686");
    let line = json!({"type":"decision","tenant_id":"acme","endpoint_id":"ep-7f3a","risk":"high","decision":"block","event_id":"quick"});
    let (status, _, _) = post_ndjson(&client(), &gw, "acme-demo-token", line.to_string());
    assert_eq!(status, 200);
    let out = dir.path().join("thoth-data/out/events.ndjson");
    wait_until("the event is in ./thoth-data/out/events.ndjson", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("\"quick\"")
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let e: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(e["context"]["fleet"]["id"], "eng-macs");
    assert_eq!(e["enrichment"]["status"], "matched");
}
