//! End-to-end: the real binary delivering to the Splunk HEC emulator.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::hec::{Fault, Hec};

use support::*;

const RISKS: [&str; 3] = ["low", "high", "critical"];
const HEC_TOKEN: &str = "6c2e1e6a-1111-4c3b-9a0e-123456789abc";

/// A config with the file sink `out` and a `splunk` HEC sink with fast retries.
fn write_config(
    dir: &std::path::Path,
    hec: &Hec,
    token: &str,
    splunk_extra: &str,
) -> std::path::PathBuf {
    let extra = format!(
        r#"
[sinks.splunk]
type = "splunk_hec"
endpoint = "{url}"
token = "{token}"
index = "thoth"
{splunk_extra}
[sinks.splunk.batch]
max_events = 500
timeout = "50ms"
[sinks.splunk.retry]
initial_backoff = "50ms"
max_backoff = "400ms"
"#,
        url = hec.url()
    );
    let text = config_text(dir, "max_bytes = \"1GiB\"", "", &extra)
        .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"8MiB\"");
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Posts NDJSON, retrying 503s as a client must.

#[test]
fn a_hundred_thousand_events_arrive_with_context_and_fields_gzipped() {
    let hec = Hec::start(HEC_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let gw = Gateway::start(&cfg);

    const TOTAL: usize = 100_000;
    const BATCH: usize = 2_000;
    let endpoints = [("acme", "ep-7f3a"), ("acme", "ep-x"), ("globex", "glx-1")];
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let url = gw.url("/v1/events");
            std::thread::spawn(move || {
                let c = client();
                for b in (t..TOTAL / BATCH).step_by(2) {
                    let mut body = String::new();
                    for i in b * BATCH..(b + 1) * BATCH {
                        let (tenant, ep) = endpoints[i % 3];
                        let mut e = json!({"type":"decision","event_id":format!("e-{i}"),"tenant_id":tenant,
                            "endpoint_id":ep,"time":"2026-11-28T10:00:00.120Z","risk":RISKS[i % 3],
                            "decision":"block"});
                        if tenant == "globex" {
                            e["device_serial"] = "PF4XK2LM".into();
                        }
                        body.push_str(&e.to_string());
                        body.push('\n');
                    }
                    loop {
                        let r = c.post(&url).bearer_auth("admin-token")
                            .header("content-type", "application/x-ndjson").body(body.clone()).send().unwrap();
                        match r.status().as_u16() {
                            200 => break,
                            503 => std::thread::sleep(Duration::from_millis(100)),
                            s => panic!("status {s}"),
                        }
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    wait_until("all events are indexed", || {
        hec.with(|s| s.indexed.len()) >= TOTAL
    });
    let indexed = hec.indexed();
    assert_eq!(indexed.len(), TOTAL, "no duplicates without faults");
    let ids: HashSet<String> = hec.indexed_ids().into_iter().collect();
    assert_eq!(ids.len(), TOTAL);
    for env in &indexed {
        let i: usize = env["event"]["event_id"].as_str().unwrap()[2..]
            .parse()
            .unwrap();
        let (tenant, ep) = endpoints[i % 3];
        assert_eq!(env["fields"]["tenant_id"], tenant);
        assert_eq!(env["fields"]["endpoint_id"], ep);
        assert_eq!(env["fields"]["risk"], RISKS[i % 3]);
        assert_eq!(env["fields"]["decision"], "block");
        assert_eq!(env["time"].as_f64().unwrap(), 1795860000.12);
        assert_eq!(env["index"], "thoth");
        match i % 3 {
            0 => {
                assert_eq!(env["fields"]["fleet_id"], "eng-macs");
                assert_eq!(env["host"], "mbp-jdoe");
                assert_eq!(
                    env["event"]["context"]["endpoint"]["serial"],
                    "C02XK1ZJMD6R"
                );
            }
            1 => assert_eq!(env["event"]["enrichment"]["status"], "unmatched"),
            _ => {
                assert_eq!(env["fields"]["fleet_id"], "globex-windows");
                assert_eq!(
                    env["event"]["context"]["endpoint"]["mdm"]["provider"],
                    "intune"
                );
            }
        }
    }
    assert_eq!(hec.violations(), Vec::<String>::new());
    let requests = hec.requests();
    assert!(requests.iter().all(|r| r.gzip), "gzip on the wire");
    assert!(requests.iter().any(|r| r.events > 1), "batched");
    let h = gw.health();
    assert_eq!(h["sinks"]["splunk"]["status"], "healthy");
    let metrics = gw.metrics();
    assert!(
        metrics.contains(&format!(
            "thoth_sink_events_total{{outcome=\"delivered\",sink=\"splunk\"}} {TOTAL}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("thoth_sink_requests_total{sink=\"splunk\",status=\"200\"}"));
    assert!(metrics.contains("thoth_sink_batch_events_bucket"));
}

#[test]
fn hec_down_then_busy_then_back_loses_nothing_and_the_file_sink_keeps_going() {
    let mut hec = Hec::start(HEC_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    // One request at a time, so that every request after a busy answer was sent after it.
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "concurrency = 1");
    let gw = Gateway::start(&cfg);
    hec.stop(); // connection refused from now on

    let lines: Vec<String> = (0..2000)
        .map(|i| decision(&format!("d-{i}"), "acme", "ep-7f3a"))
        .collect();
    for chunk in lines.chunks(200) {
        post_all(&gw, "acme-token", chunk);
    }
    // Isolation: the file sink delivers everything while HEC is down.
    wait_until("the file sink has every event", || {
        read_out(dir.path()).len() >= 2000
    });
    wait_until("the HEC sink reports the outage", || {
        gw.health()["sinks"]["splunk"]["status"] != "healthy"
    });
    let h = gw.health();
    assert!(
        h["sinks"]["splunk"]["last_error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{h}"
    );
    assert!(h["sinks"]["splunk"]["queued_events"].as_u64().unwrap() > 0);
    assert_eq!(h["sinks"]["out"]["status"], "healthy");

    // Back, but busy: three 503 code 9 with Retry-After: 1, then it takes the load.
    hec.push_faults([
        Fault::busy(Some(1)),
        Fault::busy(Some(1)),
        Fault::busy(Some(1)),
    ]);
    hec.restart();
    wait_until("every event reaches HEC", || {
        hec.indexed_ids().into_iter().collect::<HashSet<_>>().len() >= 2000
    });
    let ids: HashSet<String> = hec.indexed_ids().into_iter().collect();
    assert!(lines.iter().all(|l| ids.contains(
        serde_json::from_str::<Value>(l).unwrap()["event_id"]
            .as_str()
            .unwrap()
    )));

    // Retry-After paused the whole sink: nothing reached HEC within a second of a busy answer.
    let requests = hec.requests();
    for (i, r) in requests.iter().enumerate() {
        if r.retry_after == Some(1) {
            for later in &requests[i + 1..] {
                let gap = later.at.duration_since(r.at);
                assert!(
                    gap >= Duration::from_millis(950),
                    "a request {gap:?} after a Retry-After: 1"
                );
            }
        }
    }
    assert_eq!(requests.iter().filter(|r| r.status == 503).count(), 3);
    wait_until("the sink is healthy again", || {
        gw.health()["sinks"]["splunk"]["status"] == "healthy"
    });
}

#[test]
fn rejected_data_goes_to_the_dlq_and_replay_delivers_it_after_the_fix() {
    let hec = Hec::start(HEC_TOKEN);
    hec.with(|s| s.reject_poison = true);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let gw = Gateway::start(&cfg);

    let mut poison: Value = serde_json::from_str(&decision("bad-1", "acme", "ep-7f3a")).unwrap();
    poison["poison"] = true.into();
    post_all(
        &gw,
        "acme-token",
        &[
            decision("ok-1", "acme", "ep-7f3a"),
            poison.to_string(),
            decision("ok-2", "acme", "ep-7f3a"),
        ],
    );
    wait_until("the good events are indexed", || {
        let ids = hec.indexed_ids();
        ids.contains(&"ok-1".to_string()) && ids.contains(&"ok-2".to_string())
    });
    let mut list = Value::Null;
    wait_until("the bad event is dead-lettered", || {
        list = dlq(&cfg, "list", "splunk");
        list["count"] == 1
    });
    assert_eq!(list["sink"], "splunk");
    let entry = &list["entries"][0];
    assert_eq!(entry["event_id"], "bad-1");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("HEC code 6: Invalid data format"),
        "{entry}"
    );
    assert_eq!(entry["event"]["poison"], true);
    assert!(
        entry["event"]["context"]["tenant"]["id"] == "acme",
        "the enriched event is kept"
    );
    assert!(!hec.indexed_ids().contains(&"bad-1".to_string()));
    let metrics = gw.metrics();
    assert!(
        metrics.contains("thoth_sink_dead_letters_total{reason=\"rejected\",sink=\"splunk\"} 1"),
        "{metrics}"
    );

    // Fixed on the Splunk side: replay, while the gateway runs.
    hec.with(|s| s.reject_poison = false);
    assert_eq!(dlq(&cfg, "replay", "splunk")["replayed"], 1);
    wait_until("the replayed event is indexed", || {
        hec.indexed_ids().contains(&"bad-1".to_string())
    });
    assert_eq!(dlq(&cfg, "list", "splunk")["count"], 0);
    // It went to that sink only.
    assert_eq!(
        read_out(dir.path())
            .iter()
            .filter(|e| e["event_id"] == "bad-1")
            .count(),
        1
    );

    // Purge empties the queue.
    hec.with(|s| s.reject_poison = true);
    let mut poison2 = poison.clone();
    poison2["event_id"] = "bad-2".into();
    post_all(&gw, "acme-token", &[poison2.to_string()]);
    wait_until("the second bad event is dead-lettered", || {
        dlq(&cfg, "list", "splunk")["count"] == 1
    });
    assert_eq!(dlq(&cfg, "purge", "splunk")["purged"], 1);
    assert_eq!(dlq(&cfg, "list", "splunk")["count"], 0);
}

#[test]
fn a_refused_token_fails_the_sink_keeps_the_events_and_a_fixed_config_delivers_them() {
    let hec = Hec::start(HEC_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, "00000000-wrong-token", "");
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..50)
        .map(|i| decision(&format!("t-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    wait_until("the sink is failing", || {
        gw.health()["sinks"]["splunk"]["status"] == "failing"
    });
    let h = gw.health();
    let err = h["sinks"]["splunk"]["last_error"].as_str().unwrap();
    assert!(err.contains("code 4: Invalid token"), "{err}");
    assert!(!err.contains("wrong-token"), "no secret in health output");
    assert_eq!(h["status"], "failing");
    assert_eq!(h["sinks"]["splunk"]["queued_events"], 50);
    // Ready stays 200: the WAL still accepts.
    assert_eq!(client().get(gw.url("/ready")).send().unwrap().status(), 200);
    assert_eq!(
        dlq(&cfg, "list", "splunk")["count"],
        0,
        "nothing dead-lettered for a token error"
    );
    assert!(hec.indexed().is_empty());
    assert!(gw.terminate().success());

    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let gw = Gateway::start(&cfg);
    wait_until("the queued events arrive", || hec.indexed().len() >= 50);
    let ids: HashSet<String> = hec.indexed_ids().into_iter().collect();
    assert_eq!(ids.len(), 50);
    wait_until("the sink is healthy", || {
        gw.health()["sinks"]["splunk"]["status"] == "healthy"
    });
}

#[test]
fn a_batch_whose_ack_never_comes_is_resent() {
    let hec = Hec::start(HEC_TOKEN);
    hec.with(|s| {
        s.acks_enabled = true;
        s.withhold_acks = 1;
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &hec,
        HEC_TOKEN,
        "acknowledgements = true\nack_timeout = \"1s\"\nack_poll_interval = \"100ms\"",
    );
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..20)
        .map(|i| decision(&format!("a-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    wait_until("the unacknowledged batch is resent", || {
        let ids = hec.indexed_ids();
        ids.len() > 20 && ids.iter().collect::<HashSet<_>>().len() == 20
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in hec.indexed_ids() {
        *counts.entry(id).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n >= 1));
    assert!(
        counts.values().any(|&n| n >= 2),
        "the withheld batch came twice"
    );
    assert!(hec.violations().is_empty(), "{:?}", hec.violations());
    wait_until("the sink's cursor catches up", || {
        gw.health()["sinks"]["splunk"]["queued_events"] == 0
    });
}

#[test]
fn kill_9_mid_delivery_loses_no_acknowledged_event() {
    let hec = Hec::start(HEC_TOKEN);
    // A slow Splunk, so that requests are in flight when the gateway dies.
    hec.push_faults((0..10_000).map(|_| Fault::Delay(Duration::from_millis(20))));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let gw = Gateway::start(&cfg);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, url) = (acked.clone(), stop.clone(), gw.url("/v1/events"));
        std::thread::spawn(move || {
            let c = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..50).map(|i| format!("k-{n}-{i}")).collect();
                n += 1;
                let body: String = ids
                    .iter()
                    .map(|id| decision(id, "acme", "ep-7f3a") + "\n")
                    .collect();
                match c
                    .post(&url)
                    .bearer_auth("acme-token")
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    Ok(r) if r.status() == 503 => {}
                    Ok(r) => panic!("status {}", r.status()),
                    Err(_) => return,
                }
            }
        })
    };
    wait_until("delivery is under way", || {
        hec.with(|s| s.indexed.len()) >= 1000 && acked.lock().unwrap().len() >= 3000
    });
    gw.kill9();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    hec.with(|s| s.faults.clear());

    let _gw = Gateway::start(&cfg);
    wait_until(
        "every acknowledged event reaches HEC after the restart",
        || {
            let ids: HashSet<String> = hec.indexed_ids().into_iter().collect();
            acked.is_subset(&ids)
        },
    );
    assert!(hec.violations().is_empty());
}

#[test]
fn events_still_failing_after_max_duration_are_dead_lettered_with_the_last_reason() {
    let hec = Hec::start(HEC_TOKEN);
    hec.push_faults((0..100_000).map(|_| Fault::Status {
        http: 500,
        code: 8,
        text: "Internal server error",
        retry_after: None,
    }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "max_backoff = \"400ms\"",
        "max_backoff = \"400ms\"\nmax_duration = \"1s\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..10)
        .map(|i| decision(&format!("m-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    let mut list = Value::Null;
    wait_until("the events are dead-lettered", || {
        list = dlq(&cfg, "list", "splunk");
        list["count"] == 10
    });
    let reason = list["entries"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HEC code 8: Internal server error"),
        "{reason}"
    );
    assert!(reason.contains("max_duration"), "{reason}");
    assert!(list["entries"][0]["attempts"].as_u64().unwrap() >= 2);
    wait_until("the cursor moves past them", || {
        gw.health()["sinks"]["splunk"]["queued_events"] == 0
    });
    assert!(hec.indexed().is_empty());
}

#[test]
fn retry_after_pauses_every_slot_of_the_sink() {
    let hec = Hec::start(HEC_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "concurrency = 4");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_events = 500", "max_events = 10");
    std::fs::write(&cfg, text).unwrap();
    // Slow answers keep four requests in flight; then one busy answer with Retry-After: 2.
    hec.push_faults((0..8).map(|_| Fault::Delay(Duration::from_millis(100))));
    hec.push_faults([Fault::busy(Some(2))]);
    hec.push_faults((0..1000).map(|_| Fault::Delay(Duration::from_millis(10))));
    let gw = Gateway::start(&cfg);
    let lines: Vec<String> = (0..2000)
        .map(|i| decision(&format!("p-{i}"), "acme", "ep-7f3a"))
        .collect();
    post_all(&gw, "acme-token", &lines);
    wait_until("everything is indexed", || {
        hec.indexed_ids().into_iter().collect::<HashSet<_>>().len() >= 2000
    });
    let requests = hec.requests();
    let busy = requests
        .iter()
        .find(|r| r.retry_after == Some(2))
        .expect("the busy answer");
    // Requests already on their way when the answer went out may still land just after it;
    // none may be sent until the pause is over.
    let during: Vec<Duration> = requests
        .iter()
        .filter(|r| r.at > busy.at)
        .map(|r| r.at.duration_since(busy.at))
        .filter(|d| *d > Duration::from_millis(300) && *d < Duration::from_millis(1900))
        .collect();
    assert!(during.is_empty(), "requests during the pause: {during:?}");
}

#[test]
fn test_webhook_sends_a_test_event_through_hec() {
    let hec = Hec::start(HEC_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hec, HEC_TOKEN, "");
    let out = std::process::Command::new(BIN)
        .args(["test-webhook", "--json", "--sink", "splunk", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        (report["ok"].as_bool(), report["status"].as_u64()),
        (Some(true), Some(200))
    );
    let indexed = hec.indexed();
    assert_eq!(indexed.len(), 1);
    assert_eq!(indexed[0]["sourcetype"], "thoth:webhook_test");
    assert!(hec.violations().is_empty(), "{:?}", hec.violations());
}

#[test]
fn tls_with_a_private_ca_delivers_and_an_untrusted_certificate_never_falls_back() {
    let pki = support::server::TestPki::new();
    let hec = Hec::start_with(HEC_TOKEN, Some(pki.server.clone()));
    let https = hec.url().replace("http://", "https://");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();

    // Trusting the private CA: delivered over TLS.
    let text = |extra: &str| {
        let cfg = write_config(dir.path(), &hec, HEC_TOKEN, extra);
        let t = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&hec.url(), &https);
        std::fs::write(&cfg, t).unwrap();
        cfg
    };
    let cfg = text(&format!(
        "[sinks.splunk.tls]\nca_file = \"{}\"",
        dir.path().join("ca.pem").display()
    ));
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &[decision("tls-1", "acme", "ep-7f3a")]);
    wait_until("the event arrives over TLS", || {
        hec.indexed_ids().contains(&"tls-1".to_string())
    });
    assert!(gw.terminate().success());

    // Without the CA: a clear certificate error, nothing sent in plaintext.
    let cfg = text("");
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &[decision("tls-2", "acme", "ep-7f3a")]);
    wait_until("the sink reports the certificate", || {
        gw.health()["sinks"]["splunk"]["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("certificate"))
    });
    assert!(!hec.indexed_ids().contains(&"tls-2".to_string()));
    assert_eq!(
        hec.requests().len(),
        1,
        "only the first gateway's request got through"
    );
}
