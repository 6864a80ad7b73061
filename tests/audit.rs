//! End-to-end probes of the second hardening audit: what an attacker or a careless client
//! sends costs only what the gateway says it costs. Unauthenticated bodies are refused from
//! their headers, hostile events cost linear time, and signed webhooks are accepted once.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::receiver::sign;
use support::*;

const HOOK_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

/// The test config with a push-only Intune provider (`acme-pushed`), a webhook source with a
/// 5 s tolerance, and `extra_api` keys under `[api]`.
fn start(dir: &std::path::Path, extra_api: &str, extra: &str) -> (Gateway, std::path::PathBuf) {
    let more = format!(
        "[[mdm.providers]]\nname = \"acme-pushed\"\ntenant_id = \"acme\"\nkind = \"intune\"\n\
         [[sources.webhooks]]\nname = \"govapi\"\ntenant_id = \"acme\"\nsecrets = [\"{HOOK_SECRET}\"]\ntolerance = \"5s\"\n{extra}"
    );
    let text = config_text(dir, "", "", &more).replace(
        "max_body_bytes = \"64KiB\"",
        &format!("max_body_bytes = \"4MiB\"\n{extra_api}"),
    );
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    (Gateway::start(&cfg), cfg)
}

fn appended(gw: &Gateway) -> u64 {
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("thoth_wal_appended_events "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Sends `head` (a request line and headers, without the blank line) declaring a body of
/// `declared` bytes, then streams zeros until the gateway answers or `declared` is sent.
/// Returns the status and how many body bytes were written.
fn stream_body(gw: &Gateway, head: &str, declared: u64) -> (u16, u64) {
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(format!("{head}\r\nContent-Length: {declared}\r\n\r\n").as_bytes())
        .unwrap();
    let reader = s.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = [0u8; 4096];
        let n = reader.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let chunk = vec![b'0'; 256 * 1024];
    let mut sent = 0u64;
    while sent < declared && !answer.is_finished() {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    let text = answer.join().unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, sent)
}

#[test]
fn every_route_refuses_an_unauthenticated_body_from_its_headers_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = start(dir.path(), "", "");
    let rss_before = gw.rss_kib();
    let declared = 400 << 20; // 400 MB, as the audit sent
    let probes = [
        ("PUT /v1/mdm/acme-pushed HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json", 401),
        ("PUT /v1/mdm/acme-pushed HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer acme-token\r\nContent-Type: application/json", 403),
        ("POST /v1/reload HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json", 401),
        ("POST /v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-ndjson", 401),
        ("POST /v1/hooks/govapi HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json", 401),
        ("POST /v1/hooks/govapi HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nwebhook-id: m\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,AAAA", 401),
        ("GET /v1/tap HTTP/1.1\r\nHost: gw", 401),
        ("GET /v1/endpoints/acme/ep-1 HTTP/1.1\r\nHost: gw", 401),
        // Routes without authentication, and no route at all, never read a body either.
        ("GET /metrics HTTP/1.1\r\nHost: gw", 200),
        ("GET /v1/health HTTP/1.1\r\nHost: gw", 200),
        ("POST /v1/nothing-here HTTP/1.1\r\nHost: gw", 404),
    ];
    for (head, want) in probes {
        let (status, sent) = stream_body(&gw, head, declared);
        let line = head.lines().next().unwrap();
        assert_eq!(status, want, "{line}");
        assert!(
            sent < declared,
            "{line}: the whole body was taken ({sent} bytes)"
        );
    }
    let grown = gw.rss_kib().saturating_sub(rss_before);
    eprintln!("RSS {rss_before} KiB before the 400 MB probes, grown by {grown} KiB after");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");

    // An admin's push over mdm.max_push_bytes (256 MiB by default) is refused when its size
    // is declared, without reading it.
    let admin = "PUT /v1/mdm/acme-pushed HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer admin-token\r\nContent-Type: application/json";
    let (status, sent) = stream_body(&gw, admin, 300 << 20);
    assert_eq!(status, 413);
    assert!(sent < 300 << 20);
    let grown = gw.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn a_snapshot_push_is_streamed_bounded_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = start(dir.path(), "", "[mdm]\nmax_push_bytes = \"64KiB\"\n");
    let c = client();
    let push = |body: Vec<u8>| {
        let resp = c
            .put(gw.url("/v1/mdm/acme-pushed"))
            .bearer_auth("admin-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap_or_default())
    };
    // A valid snapshot within the limit is in use when the answer comes.
    let snapshot = serde_json::json!({"value": [{"id": "d-1", "deviceName": "push-host", "serialNumber": "PUSH-1", "operatingSystem": "Windows", "managementAgent": "mdm"}]});
    let (status, body) = push(snapshot.to_string().into_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"], 1);
    // Over the limit while streaming (no Content-Length): 413 naming the key.
    let resp = c
        .put(gw.url("/v1/mdm/acme-pushed"))
        .bearer_auth("admin-token")
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(
            std::io::repeat(b' ').take(1 << 20),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("mdm.max_push_bytes"),
        "{body}"
    );
    // An invalid snapshot: 400, and the one in use stays (no staging file left behind).
    let (status, body) = push(b"{\"value\": [".to_vec());
    assert_eq!(status, 400, "{body}");
    assert_eq!(gw.health()["mdm"]["acme-pushed"]["endpoints"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data/mdm"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A trickled body is cut off by the 30 s body timeout.
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"PUT /v1/mdm/acme-pushed HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer admin-token\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n").unwrap();
    let writer = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut w = writer;
        while w.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

/// Posts a JSON body with the acme token; the answer's JSON.
fn post_json(url: &str, body: String) -> Value {
    client()
        .post(url)
        .bearer_auth("acme-token")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()
}

/// An event with `n` keys `k0..`, then `tail`.
fn wide_event(n: usize, tail: &str) -> String {
    let mut e = String::from(r#"{"type":"alert","tenant_id":"acme","title":"wide""#);
    for i in 0..n {
        e.push_str(&format!(r#","k{i}":0"#));
    }
    e.push_str(tail);
    e.push('}');
    e
}

#[test]
fn events_with_many_keys_are_refused_by_the_member_bound_or_checked_in_linear_time() {
    // Past api.max_members (10 000 by default): 400 naming the limit, before any parsing.
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = start(dir.path(), "", "");
    let c = client();
    let body = wide_event(40_000, "");
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (gw.url("/v1/events"), body.clone());
            std::thread::spawn(move || post_json(&url, body))
        })
        .collect();
    // Meanwhile the gateway answers others.
    assert_eq!(
        c.get(gw.url("/health")).send().unwrap().status().as_u16(),
        200
    );
    for h in handles {
        let answer = h.join().unwrap();
        assert_eq!(answer["error"], "invalid_events", "{answer}");
        let message = answer["details"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("more than 10000 members (api.max_members)"),
            "{answer}"
        );
    }

    // With a higher bound, 100 000 keys (1 MiB) are checked for duplicates in one pass.
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = start(
        dir.path(),
        "max_members = 200000\nmax_event_bytes = \"2MiB\"",
        "",
    );
    let post = |body: String| post_json(&gw.url("/v1/events"), body);
    let answer = post(wide_event(100_000, r#","k99999":1"#));
    let message = answer["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("duplicate key `k99999`"), "{answer}");
    assert_eq!(post(wide_event(100_000, ""))["accepted"], 1);
}

/// Posts a signed webhook; the status.
fn hook(gw: &Gateway, id: &str, ts: i64, body: &str) -> u16 {
    client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(HOOK_SECRET, id, ts, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_signed_webhook_is_accepted_once_however_it_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = start(dir.path(), "", "");
    let body = r#"{"type":"alert","event_id":"race","tenant_id":"acme","title":"x"}"#;

    // Eight concurrent copies of one signed request: exactly one is accepted.
    let ts = now_s();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            let (url, barrier) = (gw.url("/v1/hooks/govapi"), barrier.clone());
            std::thread::spawn(move || {
                let c = client();
                let req = c
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", "msg-race")
                    .header("webhook-timestamp", ts.to_string())
                    .header(
                        "webhook-signature",
                        sign(HOOK_SECRET, "msg-race", ts, body.as_bytes()),
                    )
                    .body(body);
                barrier.wait();
                req.send().unwrap().status().as_u16()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(appended(&gw), 1);

    // Signed 4 s ahead (tolerance 5 s): a replay 6 s later is still inside the signed
    // timestamp's window, so it is refused.
    let ahead = now_s() + 4;
    let body = r#"{"type":"alert","event_id":"ahead","tenant_id":"acme","title":"x"}"#;
    assert_eq!(hook(&gw, "msg-ahead", ahead, body), 200);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hook(&gw, "msg-ahead", ahead, body), 401);
    assert_eq!(appended(&gw), 2);
}
