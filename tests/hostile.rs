//! Hostile input through the real HTTP port (issue: hardening). Every case gets its documented
//! status, nothing of a rejected request reaches the WAL, and the gateway keeps serving.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::receiver::sign;
use support::*;

const HOOK_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

fn start(dir: &std::path::Path) -> Gateway {
    let hooks = format!(
        "[[sources.webhooks]]\nname = \"govapi\"\ntenant_id = \"acme\"\nsecrets = [\"{HOOK_SECRET}\"]\n"
    );
    // A body limit above 10 MB so a 10 MB line meets the per-event limit.
    let text = config_text(dir, "", "", &hooks)
        .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"16MiB\"");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    Gateway::start(&cfg)
}

fn appended(gw: &Gateway) -> u64 {
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("thoth_wal_appended_events "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// One request over a fresh connection, written as given; the status and body of the answer.
fn raw(gw: &Gateway, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // A peer that answers before reading the whole body may reset; the answer still counts.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn post(token: &str, ctype: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nContent-Type: {ctype}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn case(name: &'static str, request: Vec<u8>, status: u16, error: &'static str) -> Case {
    Case {
        name,
        request,
        status,
        error,
    }
}

#[test]
fn hostile_requests_get_their_status_write_nothing_and_leave_the_gateway_serving() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let nd = "application/x-ndjson";
    let ev = |extra: &str| {
        format!(
            r#"{{"type":"decision","event_id":"hostile","tenant_id":"acme","endpoint_id":"ep-1001","risk":"high","decision":"block"{extra}}}"#
        )
    };
    let mut invalid_utf8 = br#"{"type":"alert","tenant_id":"acme","title":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(b"\"}\n");
    let mut utf8_second_line = format!("{}\n", ev("")).into_bytes();
    utf8_second_line.extend_from_slice(&invalid_utf8);
    let deep = format!(
        r#"{{"type":"alert","tenant_id":"acme","d":{}{}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let ten_mb_line = format!(
        r#"{{"type":"alert","tenant_id":"acme","pad":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    let bomb = gzip(&vec![0u8; 40 << 20]); // 40 MiB of zeros in ~40 KiB
    let mut cut = gzip(ev("").as_bytes());
    cut.truncate(cut.len() / 2);
    let big_header = format!("X-Pad: {}\r\n", "a".repeat(20 * 1024));
    let many_headers: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();

    let cases = vec![
        case("invalid UTF-8", post("acme-token", nd, "", &invalid_utf8), 400, "invalid_events"),
        case("invalid UTF-8 on line 2", post("acme-token", nd, "", &utf8_second_line), 400, "invalid_events"),
        case("nesting 200 000 deep", post("acme-token", nd, "", deep.as_bytes()), 400, "invalid_events"),
        case("a number past f64", post("acme-token", nd, "", ev(r#","n":1e999999"#).as_bytes()), 400, "invalid_events"),
        case("duplicate tenant_id", post("acme-token", nd, "", ev(r#","tenant_id":"globex""#).as_bytes()), 400, "invalid_events"),
        case("a 10 MB line", post("acme-token", nd, "", ten_mb_line.as_bytes()), 400, "invalid_events"),
        case("a gzip bomb", post("acme-token", nd, "Content-Encoding: gzip\r\n", &bomb), 413, "body_too_large"),
        case("truncated gzip", post("acme-token", nd, "Content-Encoding: gzip\r\n", &cut), 400, "invalid_gzip"),
        case("gzip declared, plain sent", post("acme-token", nd, "Content-Encoding: gzip\r\n", ev("").as_bytes()), 400, "invalid_gzip"),
        case("text/plain", post("acme-token", "text/plain", "", ev("").as_bytes()), 415, "unsupported_media_type"),
        case("multipart", post("acme-token", "multipart/form-data; boundary=x", "", ev("").as_bytes()), 415, "unsupported_media_type"),
        case("a 20 KiB header", post("acme-token", nd, &big_header, ev("").as_bytes()), 431, ""),
        case("2 000 headers", post("acme-token", nd, &many_headers, ev("").as_bytes()), 431, ""),
        case("another tenant's event", post("acme-token", nd, "", ev("").replace("\"acme\"", "\"globex\"").as_bytes()), 403, "forbidden_tenant"),
        case("a batch mixing tenants", post("acme-token", nd, "", format!("{}\n{}\n", ev(""), ev("").replace("\"acme\"", "\"globex\"")).as_bytes()), 403, "forbidden_tenant"),
        case("tenant_id not a string", post("acme-token", nd, "", ev("").replace("\"tenant_id\":\"acme\"", "\"tenant_id\":7").as_bytes()), 400, "invalid_events"),
        case("tenant_id with a zero-width space", post("admin-token", nd, "", ev("").replace("\"acme\"", "\"acme\\u200b\"").as_bytes()), 400, "invalid_events"),
        case("an unlisted tenant, admin token", post("admin-token", nd, "", ev("").replace("\"acme\"", "\"initech\"").as_bytes()), 400, "invalid_events"),
        case("no token", format!("POST /v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: {nd}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}").into_bytes(), 401, "unauthorized"),
        case("not JSON at all", post("acme-token", "application/json", "", b"\x00\x01\x02"), 400, "invalid_body"),
        case("chunked, unterminated", b"POST /v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer acme-token\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(), 400, ""),
    ];

    let rss_before = gw.rss_kib();
    let mut failures = Vec::new();
    for c in &cases {
        let before = appended(&gw);
        let (status, body) = raw(&gw, &c.request);
        let code = error_code(&body);
        if status != c.status || (!c.error.is_empty() && code != c.error) {
            failures.push(format!(
                "{}: expected {} {}, got {status} {body}",
                c.name, c.status, c.error
            ));
        }
        if appended(&gw) != before {
            failures.push(format!("{}: a rejected request reached the WAL", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The bomb and the 10 MB line did not inflate memory (the body limit is 16 MiB).
    assert!(
        gw.rss_kib() < rss_before + 96 * 1024,
        "RSS grew from {rss_before} KiB to {} KiB",
        gw.rss_kib()
    );
    // Nothing of them was written anywhere, and the gateway still serves.
    post_all(
        &gw,
        "acme-token",
        &[decision("after-hostile", "acme", "ep-1001")],
    );
    let out = wait_for_event(dir.path(), "after-hostile");
    assert_eq!(out.len(), 1, "only the good event was delivered: {out:?}");
    assert!(!dir.path().join("data/dlq/ingest.ndjson").exists());
}

#[test]
fn a_client_supplied_context_cannot_spoof_enrichment_and_webhooks_cannot_cross_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    // A context claiming another tenant and fleet is replaced by the gateway's.
    let spoof = r#"{"type":"decision","event_id":"spoof-ctx","tenant_id":"acme","endpoint_id":"ep-1001","risk":"low","decision":"allow","context":{"tenant":{"id":"globex"},"fleet":{"id":"globex-windows"}},"enrichment":{"status":"matched"}}"#;
    post_all(&gw, "acme-token", &[spoof.to_string()]);
    let out = wait_for_event(dir.path(), "spoof-ctx");
    let e = &out[0];
    assert_eq!(e["context"]["tenant"]["id"], "acme", "{e}");
    assert_ne!(e["context"]["fleet"]["id"], "globex-windows", "{e}");
    let raw_line = std::fs::read_to_string(out_path(dir.path())).unwrap();
    assert_eq!(
        raw_line.matches("\"context\"").count(),
        1,
        "one context: {raw_line}"
    );

    // A correctly signed webhook of another tenant than the hook's: 403, nothing written.
    let before = appended(&gw);
    let body = r#"{"type":"alert","event_id":"hook-spoof","tenant_id":"globex","title":"x"}"#;
    let ts = time_now();
    let resp = client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg-1")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(HOOK_SECRET, "msg-1", ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // One event of the hook's tenant inside a batch with another's: the batch is refused.
    let batch = r#"{"events":[{"type":"alert","tenant_id":"acme","title":"ok"},{"type":"alert","tenant_id":"globex","title":"x"}]}"#;
    let resp = client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg-2")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(HOOK_SECRET, "msg-2", ts, batch.as_bytes()),
        )
        .body(batch)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(appended(&gw), before);
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn token_guessing_gets_the_same_answer_whatever_the_guess_and_locks_nobody_out() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let c = client();
    let mut answers = std::collections::BTreeSet::new();
    // Guesses of every length, and prefixes of the real token (a timing oracle would show
    // them as closer); each gets the identical 401.
    let mut guesses: Vec<String> = (1..200).map(|n| "x".repeat(n)).collect();
    guesses.extend((1.."acme-token".len()).map(|n| "acme-token"[..n].to_string()));
    guesses.push("acme-token ".repeat(100));
    for g in &guesses {
        let (status, body, _) = post_ndjson(&c, &gw, g, decision("guess", "acme", "ep-1001"));
        answers.insert((status, body.to_string()));
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers.iter().next().unwrap().0, 401);
    // The real token still works after the storm.
    let (status, _, _) = post_ndjson(&c, &gw, "acme-token", decision("real", "acme", "ep-1001"));
    assert_eq!(status, 200);
}

#[test]
fn slow_clients_are_cut_off_and_never_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    // Slowloris: 40 connections dribbling header bytes, and one dribbling its body.
    let mut slow = Vec::new();
    for i in 0..40 {
        let addr = gw.addr.clone();
        slow.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let started = Instant::now();
            let head = format!("POST /v1/events HTTP/1.1\r\nHost: gw\r\nX-Slow-{i}: ");
            for b in head.bytes().chain(std::iter::repeat(b'a')) {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
                if started.elapsed() > PATIENCE {
                    panic!("the slow header was never cut off");
                }
            }
            started.elapsed()
        }));
    }
    let addr = gw.addr.clone();
    let slow_body = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer acme-token\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n").unwrap();
        let writer = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut w = writer;
            while w.write_all(b"{").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    });
    // Meanwhile normal clients are served.
    for i in 0..20 {
        post_all(
            &gw,
            "acme-token",
            &[decision(&format!("during-{i}"), "acme", "ep-1001")],
        );
    }
    wait_for_event(dir.path(), "during-19");
    for t in slow {
        let took = t.join().unwrap();
        assert!(took < PATIENCE, "{took:?}");
    }
    let answer = slow_body.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(appended(&gw), 20);
}
