//! The benchmark's tools against the real binary: `thoth-load`'s generator drives the gateway
//! through a rate limit (429s retried, nothing lost), every event is enriched from the
//! generated MDM snapshot, and the fast HEC receiver counts exactly what the sink sent.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use thoth_load::generate::Workload;
use thoth_load::receive::{self, ReceiverOptions};
use thoth_load::send::{self, SendOptions};

const HEC_TOKEN: &str = "load-hec-token";
const EVENTS: u64 = 3000;

#[test]
fn generated_load_is_accepted_through_429s_enriched_and_counted_by_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    // The generated snapshot replaces the example one: every generated endpoint is in it.
    let snapshot = std::fs::File::create(dir.path().join("acme-jamf.json")).unwrap();
    thoth_load::snapshot::write_jamf("acme", 200, &mut std::io::BufWriter::new(snapshot)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = ReceiverOptions {
        hec_token: Some(HEC_TOKEN.into()),
        ..Default::default()
    };
    let (receiver, stats) = rt
        .block_on(receive::start("127.0.0.1:0".parse().unwrap(), options))
        .unwrap();
    let extra = format!(
        "[sinks.splunk]\ntype = \"splunk_hec\"\nendpoint = \"http://{receiver}\"\ntoken = \"{HEC_TOKEN}\"\n"
    );
    let text = config_text(dir.path(), "", "", &extra).replace(
        "tenant_id = \"acme\"\ntoken = \"acme-token\"",
        "tenant_id = \"acme\"\ntoken = \"acme-token\"\nmax_events_per_second = 1000",
    );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);

    let report = rt
        .block_on(send::run(SendOptions {
            connections: 3,
            max_events: Some(EVENTS),
            gzip: true,
            // Batches under the test config's 64 KiB body limit.
            workload: Workload {
                endpoints: 200,
                batch: 50,
                ..Workload::default()
            },
            ..SendOptions::to(gw.url("/v1/events").parse().unwrap(), "acme", "acme-token")
        }))
        .unwrap();
    assert_eq!(report.accepted, EVENTS, "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert!(
        report.retried_requests > 0,
        "the rate limit answered 429 and was retried: {report:?}"
    );

    let out = out_path(dir.path());
    wait_until("every accepted event is in the file", || {
        read_ndjson(&out).len() as u64 >= EVENTS
    });
    let events = read_ndjson(&out);
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, EVENTS, "each event once, none lost");
    let unmatched: Vec<_> = events
        .iter()
        .filter(|e| e["enrichment"]["status"] != "matched")
        .collect();
    assert!(
        unmatched.is_empty(),
        "all enriched: {:?}",
        unmatched.first()
    );
    assert!(events.iter().any(|e| e["type"] == "checkin"));
    assert!(events
        .iter()
        .any(|e| e["risk"] == "critical" && e["decision"] == "block"));

    wait_until("the receiver counted every event", || {
        stats.hec_events.load(Ordering::Relaxed) >= EVENTS
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        stats.hec_events.load(Ordering::Relaxed),
        EVENTS,
        "no event twice"
    );
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
}

#[test]
fn the_receiver_refuses_a_wrong_token_and_bodies_it_cannot_count() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = ReceiverOptions {
        hec_token: Some(HEC_TOKEN.into()),
        ..Default::default()
    };
    let (addr, stats) = rt
        .block_on(receive::start("127.0.0.1:0".parse().unwrap(), options))
        .unwrap();
    let c = client();
    let hec = format!("http://{addr}/services/collector/event");
    let post = |auth: &str, body: &str| {
        c.post(&hec)
            .header("Authorization", auth)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("Splunk nope", r#"{"event":1}"#), 403);
    assert_eq!(post(&format!("Splunk {HEC_TOKEN}"), r#"{"event":1"#), 400);
    assert_eq!(
        post(&format!("Splunk {HEC_TOKEN}"), r#"{"event":1}{"event":2}"#),
        200
    );
    let bulk = c
        .post(format!("http://{addr}/_bulk"))
        .body("{\"create\":{}}\n")
        .send()
        .unwrap();
    assert_eq!(bulk.status().as_u16(), 400);
    assert_eq!(stats.hec_events.load(Ordering::Relaxed), 2);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 3);
}

/// What the outside-in benchmark posts (`thoth-load bodies` files, as wrk sends them) against a
/// mixed fleet (`thoth-load snapshot` for Jamf and for Intune): every batch is accepted and
/// every event enriched, the Intune tenant's decisions by serial and its check-ins (which
/// carry none) by hostname.
#[test]
fn the_written_bodies_against_a_jamf_and_an_intune_fleet_are_accepted_and_all_enriched() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, f: fn(&str, u32, &mut dyn std::io::Write) -> std::io::Result<()>| {
        let tenant = name.split('-').next().unwrap();
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.path().join(name)).unwrap());
        f(tenant, 40, &mut out).unwrap();
    };
    write("acme-jamf.json", thoth_load::snapshot::write_jamf);
    write("globex-intune.json", thoth_load::snapshot::write_intune);
    let tenants = [("acme", "acme-token"), ("globex", "globex-token")].map(|(tenant, token)| {
        thoth_load::send::TenantToken {
            tenant: tenant.into(),
            token: token.into(),
        }
    });
    let workload = Workload {
        endpoints: 40,
        batch: 50,
        checkin_percent: 20,
        ..Workload::default()
    };
    let bodies = dir.path().join("bodies");
    thoth_load::bodies::write_bodies(&bodies, 6, &tenants, &workload, &thoth_event::now_rfc3339())
        .unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", "")).unwrap();
    let gw = Gateway::start(&cfg);
    let client = client();
    let manifest = std::fs::read_to_string(bodies.join("manifest.txt")).unwrap();
    for line in manifest.lines() {
        let (token, file) = line.split_once(' ').unwrap();
        let body = std::fs::read_to_string(bodies.join(file)).unwrap();
        let (status, resp, _) = post_ndjson(&client, &gw, token, body);
        assert_eq!(status, 200, "{file}: {resp}");
        assert_eq!(resp["accepted"], 50, "{file}: {resp}");
    }
    let out = out_path(dir.path());
    wait_until("all 300 events are delivered", || {
        read_ndjson(&out).len() >= 300
    });
    let events = read_ndjson(&out);
    assert_eq!(events.len(), 300);
    let mut matched_on = std::collections::BTreeMap::new();
    for e in &events {
        assert_eq!(e["enrichment"]["status"], "matched", "{e}");
        let key = (
            e["tenant_id"].as_str().unwrap().to_string(),
            e["type"].as_str().unwrap().to_string(),
            e["enrichment"]["matched_on"].as_str().unwrap().to_string(),
        );
        *matched_on.entry(key).or_insert(0) += 1;
    }
    for (tenant, kind, on) in matched_on.keys() {
        let expected = match (tenant.as_str(), kind.as_str()) {
            ("acme", _) => "endpoint_id",
            ("globex", "decision") => "serial",
            _ => "hostname",
        };
        assert_eq!(on, expected, "{tenant} {kind}: {matched_on:?}");
    }
    assert!(
        matched_on
            .keys()
            .any(|(t, k, _)| t == "globex" && k == "checkin"),
        "{matched_on:?}"
    );
}
