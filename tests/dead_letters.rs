//! End-to-end: every dead-letter queue replays (a file sink's, the `ingest` queue), a replayed
//! entry leaves its queue only once delivered or dead-lettered again, and a damaged queue
//! file is read around its damage.

mod support;

use std::path::Path;

use serde_json::Value;
use support::*;

/// Loads the config file again through the API (admin); panics unless it applied.
fn reload(gw: &Gateway) {
    let resp = client()
        .post(gw.url("/v1/reload"))
        .bearer_auth("admin-token")
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().unwrap_or_default();
    assert_eq!(status, 200, "{body}");
}

fn write(dir: &Path, sink_extra: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config_text(dir, "", sink_extra, extra)).unwrap();
    cfg
}

/// A decision of a known endpoint (in the example Jamf snapshot) marked `poison`.
fn poisoned(id: &str) -> String {
    let mut e: Value = serde_json::from_str(&decision(id, "acme", "ep-7f3a")).unwrap();
    e["poison"] = true.into();
    e.to_string()
}

#[test]
fn a_file_sinks_dead_letters_replay_once_the_remap_works_and_stay_while_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let failing = "remap = '''\nif .poison == true { abort }\n'''";
    let cfg = write(dir.path(), failing, "");
    let gw = Gateway::start(&cfg);
    post_all(
        &gw,
        "acme-token",
        &[poisoned("p-1"), decision("ok-1", "acme", "ep-1001")],
    );
    wait_for_event(dir.path(), "ok-1");
    wait_until("the poisoned event is dead-lettered", || {
        dlq(&cfg, "list", "out")["count"] == 1
    });

    // Replayed while the remap still aborts: dead-lettered again, so it stays in the queue.
    assert_eq!(dlq(&cfg, "replay", "out")["replayed"], 1);
    wait_until("the replay is done and the entry is back", || {
        dlq(&cfg, "list", "out")["count"] == 1
            && !dir.path().join("data/dlq/out.replaying.ndjson").exists()
            && !dir.path().join("data/dlq/out.replay.ndjson").exists()
    });
    assert!(!read_out(dir.path()).iter().any(|e| e["event_id"] == "p-1"));

    // The remap is fixed: the replay delivers it, and the queue is empty.
    std::fs::write(&cfg, config_text(dir.path(), "", "", "")).unwrap();
    reload(&gw);
    assert_eq!(dlq(&cfg, "replay", "out")["replayed"], 1);
    let out = wait_for_event(dir.path(), "p-1");
    let replayed = out.iter().find(|e| e["event_id"] == "p-1").unwrap();
    assert_eq!(
        replayed["context"]["tenant"]["id"], "acme",
        "the enriched event"
    );
    wait_until("the replay is finished", || {
        !dir.path().join("data/dlq/out.replaying.ndjson").exists()
    });
    assert_eq!(dlq(&cfg, "list", "out")["count"], 0);
    assert_eq!(
        out.iter().filter(|e| e["event_id"] == "p-1").count(),
        1,
        "delivered once"
    );
}

#[test]
fn the_ingest_queue_replays_through_enrichment_the_transform_and_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let aborting =
        "[transform]\nsource = '''\nif .poison == true { abort }\n.stage = \"transformed\"\n'''\n";
    let cfg = write(dir.path(), "", aborting);
    let gw = Gateway::start(&cfg);
    post_all(
        &gw,
        "acme-token",
        &[poisoned("i-1"), decision("i-2", "acme", "ep-1001")],
    );
    wait_for_event(dir.path(), "i-2");
    let listed = dlq(&cfg, "list", "ingest");
    assert_eq!(listed["count"], 1, "{listed}");

    // While the transform still aborts, the replayed entry is dead-lettered again.
    assert_eq!(dlq(&cfg, "replay", "ingest")["replayed"], 1);
    wait_until("the entry is back in the queue", || {
        dlq(&cfg, "list", "ingest")["count"] == 1
            && !dir.path().join("data/dlq/ingest.replaying.ndjson").exists()
            && !dir.path().join("data/dlq/ingest.replay.ndjson").exists()
    });

    // A transform that takes it: replayed through the whole pipeline to the file sink.
    let fixed = aborting.replace("if .poison == true { abort }\n", "");
    std::fs::write(&cfg, config_text(dir.path(), "", "", &fixed)).unwrap();
    reload(&gw);
    assert_eq!(dlq(&cfg, "replay", "ingest")["replayed"], 1);
    let out = wait_for_event(dir.path(), "i-1");
    let e = out.iter().find(|e| e["event_id"] == "i-1").unwrap();
    assert_eq!(e["stage"], "transformed", "{e}");
    assert_eq!(e["enrichment"]["status"], "matched", "enriched again: {e}");
    wait_until("the replay is finished", || {
        !dir.path().join("data/dlq/ingest.replaying.ndjson").exists()
    });
    assert_eq!(dlq(&cfg, "list", "ingest")["count"], 0);
}

#[test]
fn a_torn_dead_letter_line_is_reported_and_the_rest_of_the_queue_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "remap = '''\nif .poison == true { abort }\n'''",
        "",
    );
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &[poisoned("t-1")]);
    wait_until("dead-lettered", || dlq(&cfg, "list", "out")["count"] == 1);
    // A crash cut an append short.
    let queue = dir.path().join("data/dlq/out.ndjson");
    let mut content = std::fs::read(&queue).unwrap();
    content.extend_from_slice(br#"{"version":1,"event_id":"torn","sink":"ou"#);
    std::fs::write(&queue, content).unwrap();
    let listed = dlq(&cfg, "list", "out");
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["unreadable"][0]["line"], 2, "{listed}");
    // The next dead letter starts on a line of its own.
    post_all(&gw, "acme-token", &[poisoned("t-2")]);
    wait_until("the next one is listed", || {
        dlq(&cfg, "list", "out")["count"] == 2
    });
    let listed = dlq(&cfg, "list", "out");
    let ids: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t-1", "t-2"]);
    assert_eq!(listed["unreadable"].as_array().unwrap().len(), 1);
}
