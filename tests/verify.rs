//! End-to-end: `thoth-gateway verify --json` against emulators of every sink type and an MDM
//! API: every item ok with the canary in each destination; with one sink down, that item is
//! `ok: false` with the reason and the exit code is 1.

mod support;

use std::path::Path;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use serde_json::Value;
use support::elastic::{Elastic, Flavor};
use support::hec::Hec;
use support::mdm::*;
use support::receiver::Receiver;
use support::sentinel::*;
use support::*;

const HEC_TOKEN: &str = "3f1c7a52-hec-token";
const ES_KEY: &str = "ZXM6a2V5";
const SENTINEL_SECRET: &str = "Xy~8Q~verify.secret";
const WEBHOOK_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

struct Emulators {
    hec: Hec,
    es: Elastic,
    sentinel: SentinelEmulator,
    soar: Receiver,
    mdm: MdmEmulator,
    kafka: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

fn config(dir: &Path, e: &Emulators) -> std::path::PathBuf {
    std::fs::write(dir.join("sentinel_secret"), SENTINEL_SECRET).unwrap();
    let sinks = format!(
        r#"
[[mdm.providers]]
name = "acme-jamf-api"
tenant_id = "acme"
kind = "jamf"
url = "{mdm}"
client_id = "{JAMF_CLIENT_ID}"
client_secret = "{JAMF_CLIENT_SECRET}"
endpoint_id_attribute = "Thoth Endpoint ID"

[sinks.splunk]
type = "splunk_hec"
endpoint = "{hec}"
token = "{HEC_TOKEN}"
index = "thoth"
[sinks.elastic]
type = "elasticsearch"
endpoints = ["{es}"]
api_key = "{ES_KEY}"
data_stream = "logs-thoth.events-default"
[sinks.sentinel]
type = "sentinel"
endpoint = "{sentinel}"
dcr_immutable_id = "{DCR}"
stream = "{STREAM}"
azure_tenant_id = "{AZURE_TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "{dir}/sentinel_secret"
authority = "{sentinel}"
[sinks.soar]
type = "webhook"
url = "{soar}"
secret = "{WEBHOOK_SECRET}"
[sinks.bus]
type = "kafka"
bootstrap_servers = "{kafka}"
topic = "thoth.enriched"
"#,
        dir = dir.display(),
        mdm = e.mdm.url(),
        hec = e.hec.url(),
        es = e.es.url(),
        sentinel = e.sentinel.url(),
        soar = e.soar.url(),
        kafka = e.kafka.bootstrap_servers(),
    );
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config_text(dir, "", "", &sinks)).unwrap();
    cfg
}

fn verify(cfg: &Path) -> (Option<i32>, Value) {
    let out = std::process::Command::new(BIN)
        .args(["verify", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

#[test]
fn verify_sends_a_canary_through_every_sink_and_names_the_one_that_is_down() {
    let kafka = MockCluster::new(1).expect("mock cluster");
    kafka.create_topic("thoth.enriched", 1, 1).unwrap();
    let mut e = Emulators {
        hec: Hec::start(HEC_TOKEN),
        es: Elastic::start(Flavor::Elasticsearch8, Some(ES_KEY)),
        sentinel: SentinelEmulator::start(SENTINEL_SECRET, Duration::from_secs(3600)),
        soar: Receiver::start(&[WEBHOOK_SECRET], None),
        mdm: MdmEmulator::start(7, 0),
        kafka,
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &e);

    let (code, report) = verify(&cfg);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["config"]["ok"], true);
    for sink in ["out", "splunk", "elastic", "sentinel", "soar", "bus"] {
        let item = &report["sinks"][sink];
        assert_eq!(item["ok"], true, "{sink}: {item}");
        assert!(item["latency_ms"].is_u64(), "{item}");
        assert!(item["event_id"].is_string(), "{item}");
        assert_eq!(item["error"], Value::Null);
    }
    assert_eq!(report["sinks"]["splunk"]["type"], "splunk_hec");
    assert_eq!(report["sinks"]["splunk"]["status"], 200);
    // The canary arrived in each destination, tagged so SIEM searches find it.
    let canary = |sink: &str| {
        report["sinks"][sink]["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let indexed = e.hec.indexed();
    let hec_event = indexed
        .iter()
        .find(|v| v["event"]["event_id"] == canary("splunk").as_str())
        .expect("the canary is in the HEC index");
    assert_eq!(hec_event["sourcetype"], "thoth:webhook_test");
    assert_eq!(hec_event["event"]["thoth_test"], true);
    assert_eq!(hec_event["event"]["canary"], "verify");
    assert!(
        e.es.doc_count() == 1,
        "one canary document in Elasticsearch"
    );
    assert_eq!(e.sentinel.record_ids(), vec![canary("sentinel")]);
    let delivered = e.soar.accepted();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["event_id"], canary("soar").as_str());
    assert_eq!(delivered[0].verified_by, vec![WEBHOOK_SECRET.to_string()]);
    let out = read_out(dir.path());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["event_id"], canary("out").as_str());
    // MDM: the API provider was reached and counted, the file providers read.
    assert_eq!(report["mdm"]["acme-jamf-api"]["ok"], true);
    assert_eq!(report["mdm"]["acme-jamf-api"]["source"], "api");
    assert_eq!(report["mdm"]["acme-jamf-api"]["endpoints"], 7);
    assert_eq!(report["mdm"]["acme-jamf"]["source"], "file");
    assert!(
        report["mdm"]["globex-intune"]["endpoints"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["checkins"]["ok"], true);
    // verify never writes the data dir (it may run beside a gateway).
    assert!(!dir.path().join("data").exists());

    // One sink down: that item fails with the reason; the others are still ok; exit 1.
    e.hec.stop();
    let (code, report) = verify(&cfg);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let splunk = &report["sinks"]["splunk"];
    assert_eq!(splunk["ok"], false);
    assert!(
        splunk["error"].as_str().unwrap().contains("connect"),
        "{splunk}"
    );
    for sink in ["out", "elastic", "sentinel", "soar", "bus"] {
        assert_eq!(report["sinks"][sink]["ok"], true, "{sink}");
    }

    // An MDM API that refuses the credentials fails its item too.
    e.hec.restart();
    e.mdm.stop();
    let (code, report) = verify(&cfg);
    assert_eq!(code, Some(1));
    assert_eq!(report["mdm"]["acme-jamf-api"]["ok"], false);
    assert!(report["mdm"]["acme-jamf-api"]["error"].is_string());
    assert_eq!(report["sinks"]["splunk"]["ok"], true, "{report:#}");
}

#[test]
fn verify_of_an_invalid_config_reports_the_errors_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    let text = config_text(dir.path(), "", "condition = '.risk =='", "");
    std::fs::write(&cfg, text).unwrap();
    let (code, report) = verify(&cfg);
    assert_eq!(code, Some(2));
    assert_eq!(report["ok"], false);
    assert_eq!(report["config"]["ok"], false);
    assert_eq!(report["config"]["errors"][0]["path"], "sinks.out.condition");
}
