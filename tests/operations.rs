//! End-to-end: live inspection (`/v1/tap`, `thoth-gateway tap`), structured logs
//! (`--log-format json`, sink fields, no secrets or event bodies), and the packaging
//! commands (`completions`, `man`, `--version`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

fn tap_lines(gw: &Gateway, query: &str, token: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .build()
        .unwrap()
        .get(gw.url(&format!("/v1/tap?{query}")))
        .bearer_auth(token)
        .send()
        .unwrap()
}

#[test]
fn tap_streams_sampled_events_of_a_stage_and_tenant_and_ends_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", "")).unwrap();
    let gw = Gateway::start(&cfg);

    assert_eq!(tap_lines(&gw, "stage=ingest", "acme-token").status(), 403);
    let bad = tap_lines(&gw, "stage=sink:nope", "admin-token");
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().unwrap();
    assert!(
        bad["message"].as_str().unwrap().contains("sink:out"),
        "{bad}"
    );

    // The CLI, on the sink stage, for one tenant.
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "admin-token\n").unwrap();
    let mut cli = Command::new(BIN)
        .args([
            "tap", "--stage", "sink:out", "--tenant", "globex", "--count", "3",
        ])
        .args(["--url", &gw.url("")])
        .arg("--token-file")
        .arg(&token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The raw API, on the ingest stage.
    let ingest = tap_lines(&gw, "stage=ingest&tenant=acme", "admin-token");
    assert_eq!(ingest.status(), 200);
    assert_eq!(ingest.headers()["content-type"], "application/x-ndjson");
    let mut ingest = BufReader::new(ingest);

    let mut n = 0;
    let cli_done = loop {
        n += 1;
        post_all(
            &gw,
            "admin-token",
            &[
                decision(&format!("a-{n}"), "acme", "ep-1001"),
                decision(&format!("g-{n}"), "globex", "ep-2001"),
            ],
        );
        if let Some(status) = cli.try_wait().unwrap() {
            break status;
        }
        assert!(n < 3000, "the tap CLI never got 3 events");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(cli_done.success());
    let out = cli.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["stage"], "sink:out");
        assert_eq!(l["tenant_id"], "globex");
        assert_eq!(l["event"]["tenant_id"], "globex");
        assert!(
            l["event"]["context"].is_object(),
            "what the sink sends is enriched: {l}"
        );
    }

    let mut line = String::new();
    ingest.read_line(&mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["stage"], "ingest");
    assert_eq!(first["tenant_id"], "acme");
    assert!(
        first["event"]["context"].is_null(),
        "ingest is before enrichment: {first}"
    );

    // An open tap does not hold up shutdown, and its stream ends.
    assert!(gw.terminate().success());
    let mut rest = String::new();
    while ingest.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {}
}

#[test]
fn json_logs_carry_sink_fields_and_never_secrets_or_event_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cfg = dir.path().join("gateway.toml");
    let extra = format!(
        r#"
[sinks.splunk]
type = "splunk_hec"
endpoint = "{dead}"
token = "hec-secret-3f1c7a52"
[sinks.splunk.retry]
initial_backoff = "20ms"
max_backoff = "50ms"
"#
    );
    std::fs::write(&cfg, config_text(dir.path(), "", "", &extra)).unwrap();
    let gw = Gateway::start_with_args(&cfg, &["--log-format", "json"]);
    let body = serde_json::json!({
        "type": "decision", "event_id": "log-1", "tenant_id": "acme", "endpoint_id": "ep-1001",
        "risk": "high", "decision": "block", "prompt_excerpt": "body-marker-9d2e"
    })
    .to_string();
    post_all(&gw, "acme-token", &[body]);
    wait_for_event(dir.path(), "log-1");
    wait_until("the sink logs its failures", || {
        gw.logs().lines().any(|l| l.contains("\"sink\":\"splunk\""))
    });
    let logs = gw.logs();
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(
        !logs.contains("hec-secret-3f1c7a52"),
        "a secret was logged:\n{logs}"
    );
    assert!(!logs.contains("acme-token"), "a token was logged:\n{logs}");
    assert!(
        !logs.contains("body-marker-9d2e"),
        "an event body was logged:\n{logs}"
    );
}

#[test]
fn completions_man_page_and_version_come_from_the_command_line() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Each shell's script knows the subcommands, including the newest.
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef thoth-gateway"),
        ("fish", "complete -c thoth-gateway"),
    ] {
        let script = run(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["validate", "dlq", "verify", "completions"] {
            assert!(script.contains(command), "{shell} completes no {command}");
        }
    }
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH thoth-gateway"),
        "{man}"
    );
    for section in ["validate", "verify", "dlq"] {
        assert!(
            man.contains(&format!("thoth\\-gateway\\-{section}"))
                || man.contains(&format!("thoth-gateway-{section}")),
            "man page has no {section}"
        );
    }
    let version = run(&["--version"]);
    assert!(
        version.starts_with(&format!(
            "thoth-gateway {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let bad = Command::new(BIN)
        .args(["completions", "powershell-9"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
