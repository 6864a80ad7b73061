//! End-to-end: the real binary delivering to the Entra ID + Logs Ingestion emulator.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::sentinel::*;
use support::*;

const SECRET: &str = "Xy~8Q~correct.secret-value";

fn write_config(
    dir: &std::path::Path,
    emu: &SentinelEmulator,
    secret: &str,
    extra: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("sentinel_secret"), format!("{secret}\n")).unwrap();
    let sink = format!(
        r#"
[sinks.sentinel]
type = "sentinel"
endpoint = "{url}"
dcr_immutable_id = "{DCR}"
stream = "{STREAM}"
azure_tenant_id = "{AZURE_TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret_file}"
authority = "{url}"
{extra}
[sinks.sentinel.batch]
max_events = 5000
max_bytes = "8MiB"
timeout = "50ms"
[sinks.sentinel.retry]
initial_backoff = "50ms"
max_backoff = "400ms"
"#,
        url = emu.url(),
        secret_file = dir.join("sentinel_secret").display(),
    );
    let text = config_text(dir, "max_bytes = \"1GiB\"", "", &sink)
        .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"8MiB\"");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn a_hundred_thousand_events_arrive_as_records_of_the_stream_in_calls_under_1_mb() {
    let emu = SentinelEmulator::start(SECRET, Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu, SECRET, "");
    let gw = Gateway::start(&cfg);
    const TOTAL: usize = 100_000;
    for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(2_000) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let (tenant, ep) = if i % 2 == 0 { ("acme", "ep-7f3a") } else { ("globex", "glx-1") };
                json!({"type":"decision","event_id":format!("s-{i}"),"tenant_id":tenant,"endpoint_id":ep,
                       "device_serial": if tenant == "globex" { "PF4XK2LM" } else { "C02XK1ZJMD6R" },
                       "time":"2026-11-28T10:00:00.120Z","risk":"high","decision":"block"})
                .to_string()
            })
            .collect();
        post_all(&gw, "admin-token", &lines);
    }
    wait_until("every record arrives", || {
        emu.with(|s| s.records.len()) >= TOTAL
    });
    std::thread::sleep(Duration::from_millis(200));
    let ids: HashSet<String> = emu.record_ids().into_iter().collect();
    assert_eq!(ids.len(), TOTAL);
    assert_eq!(emu.with(|s| s.records.len()), TOTAL, "once each");
    emu.with(|s| {
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert!(
            s.calls.iter().all(|c| c.status == 204),
            "every call accepted"
        );
        let biggest = s.calls.iter().map(|c| c.uncompressed_bytes).max().unwrap();
        assert!(biggest <= MAX_CALL_BYTES, "a call of {biggest} bytes");
        assert!(
            biggest > MAX_CALL_BYTES / 2,
            "batches are packed up to the limit: {biggest}"
        );
        let r = s.records.iter().find(|r| r["EventId"] == "s-1").unwrap();
        assert_eq!(r["TenantId"], "globex");
        assert_eq!(r["FleetId"], "globex-windows");
        assert_eq!(r["EndpointId"], "glx-1");
        assert_eq!(r["Hostname"], "GLX-LT-0042");
        assert_eq!(
            (
                r["Type"].as_str(),
                r["Risk"].as_str(),
                r["Decision"].as_str()
            ),
            (Some("decision"), Some("high"), Some("block"))
        );
        assert_eq!(r["TimeGenerated"], "2026-11-28T10:00:00.120Z");
        assert_eq!(
            r["Event"]["context"]["endpoint"]["mdm"]["provider"],
            "intune"
        );
    });
    assert_eq!(emu.with(|s| s.tokens_issued), 1, "the token is cached");
    // The runbook's DCR declares exactly the columns the emulator (and the sink) use.
    let dcr: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/runbooks/sentinel/dcr.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let declared: Vec<(String, String)> = dcr["resources"][1]["properties"]["streamDeclarations"]
        [STREAM]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(declared, expected);
    assert_eq!(gw.health()["sinks"]["sentinel"]["status"], "healthy");
}

#[test]
fn tokens_expiring_mid_run_are_refreshed_without_loss() {
    // Tokens live 2 s: the sink refreshes ahead of expiry; a call that still meets an expired
    // token gets 401 and is retried with a new one.
    let emu = SentinelEmulator::start(SECRET, Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu, SECRET, "");
    let gw = Gateway::start(&cfg);
    let mut sent = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let lines: Vec<String> = (0..200)
            .map(|i| decision(&format!("x-{sent}-{i}"), "acme", "ep-7f3a"))
            .collect();
        post_all(&gw, "admin-token", &lines);
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // One 401 on purpose too: the sink refreshes and resends.
    emu.with(|s| s.faults.push_back((401, None)));
    let lines: Vec<String> = (0..200)
        .map(|i| decision(&format!("x-last-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "admin-token", &lines);
    let total = (sent + 1) * 200;
    wait_until("every record arrives", || {
        emu.record_ids().into_iter().collect::<HashSet<_>>().len() >= total
    });
    assert!(emu.with(|s| s.tokens_issued) >= 3, "tokens were refreshed");
    assert_eq!(
        dlq(&cfg, "list", "sentinel")["count"].as_u64().unwrap(),
        0,
        "nothing dead-lettered"
    );
    wait_until("the sink is healthy", || {
        gw.health()["sinks"]["sentinel"]["status"] == "healthy"
    });
}

#[test]
fn retry_after_5_is_honoured_then_everything_arrives() {
    let emu = SentinelEmulator::start(SECRET, Duration::from_secs(3600));
    emu.with(|s| {
        s.faults.push_back((413, None)); // the first call: split in halves and resent
        s.faults.push_back((429, Some(5)));
        s.faults.push_back((503, Some(1)));
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu, SECRET, "concurrency = 1");
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..3000)
        .map(|i| decision(&format!("r-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "admin-token", &lines);
    wait_until("every record arrives", || {
        emu.record_ids().into_iter().collect::<HashSet<_>>().len() >= 3000
    });
    let calls = emu.with(|s| s.calls.clone());
    let throttled = calls.iter().find(|c| c.status == 429).expect("the 429");
    let next = calls
        .iter()
        .find(|c| c.at > throttled.at)
        .expect("a call after the 429");
    assert!(
        next.at.duration_since(throttled.at) >= Duration::from_millis(4950),
        "a call {:?} after Retry-After: 5",
        next.at.duration_since(throttled.at)
    );
    assert_eq!(dlq(&cfg, "list", "sentinel")["count"].as_u64().unwrap(), 0);
    let first_ok = calls.iter().find(|c| c.status == 204).unwrap();
    assert!(first_ok.records < 3000, "the batch was split after the 413");
    drop(gw);
}

#[test]
fn a_wrong_client_secret_fails_the_sink_keeps_events_and_a_fixed_config_delivers() {
    let emu = SentinelEmulator::start(SECRET, Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu, "an-old-secret", "");
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..100)
        .map(|i| decision(&format!("w-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "admin-token", &lines);
    wait_until("the sink is failing", || {
        gw.health()["sinks"]["sentinel"]["status"] == "failing"
    });
    let h = gw.health();
    let err = h["sinks"]["sentinel"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("Entra ID refused the client credentials"),
        "{err}"
    );
    assert!(
        err.contains("invalid_client")
            && err.contains("AADSTS7000215: Invalid client secret provided"),
        "{err}"
    );
    assert!(!err.contains("an-old-secret"));
    assert_eq!(h["sinks"]["sentinel"]["queued_events"], 100);
    assert_eq!(dlq(&cfg, "list", "sentinel")["count"].as_u64().unwrap(), 0);
    assert!(
        emu.with(|s| s.calls.is_empty()),
        "nothing sent without a token"
    );
    assert!(gw.terminate().success());

    let cfg = write_config(dir.path(), &emu, SECRET, "");
    let gw = Gateway::start(&cfg);
    wait_until("the kept events arrive", || {
        emu.with(|s| s.records.len()) >= 100
    });
    wait_until("the sink is healthy", || {
        gw.health()["sinks"]["sentinel"]["status"] == "healthy"
    });
}

#[test]
fn an_unreachable_authority_is_reported_as_such() {
    let emu = SentinelEmulator::start(SECRET, Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cfg = write_config(dir.path(), &emu, SECRET, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("authority = \"{}\"", emu.url()),
        &format!("authority = \"{dead}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);
    post_all(&gw, "admin-token", &[decision("u-1", "acme", "ep-7f3a")]);
    wait_until("the sink is failing", || {
        gw.health()["sinks"]["sentinel"]["status"] == "failing"
    });
    let err = gw.health()["sinks"]["sentinel"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot reach the Entra ID authority"), "{err}");
}
