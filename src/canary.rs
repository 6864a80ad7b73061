//! The canary: one tagged `webhook_test` event sent to a sink now, through its real protocol,
//! bypassing the WAL — for `test-webhook` and `verify`.
//!
//! Canaries carry `thoth_test = true` and `canary = "<command>"` so SIEM searches can find
//! (or exclude) them: `sourcetype="thoth:webhook_test" thoth_test=true` in Splunk,
//! `thoth.thoth_test: true` in Elastic, `Type == "webhook_test"` in Sentinel.

use std::time::Duration;

use serde_json::json;
use thoth_config::{Config, SinkConfig, SinkKind};
use thoth_event::{now_rfc3339, Event};
use thoth_sinks::ProbeResult;

use crate::destinations;

/// How long a canary may take to be acknowledged.
const CANARY_TIMEOUT: Duration = Duration::from_secs(15);

/// An enriched `webhook_test` event for `sink`, of the sink's first tenant (or the config's):
/// its `event_id` and JSON.
pub fn event(config: &Config, sink: &SinkConfig, origin: &str) -> (String, Vec<u8>) {
    let tenant = sink
        .tenants
        .as_ref()
        .and_then(|t| t.first())
        .or_else(|| config.tenants.first().map(|t| &t.id))
        .cloned()
        .unwrap_or_default();
    let event = json!({
        "type": "webhook_test",
        "tenant_id": tenant,
        "title": format!("thoth-gateway {origin}"),
        "description": format!("canary event for sink {}", sink.name),
        "source": format!("thoth-gateway {origin}"),
        "thoth_test": true,
        "canary": origin,
    });
    let now = now_rfc3339();
    let event = Event::parse(event.to_string().as_bytes(), &now).expect("the canary is valid");
    let tenant_json = config
        .tenant(&tenant)
        .map(|t| json!({"id": t.id, "name": t.name}))
        .unwrap_or_else(|| json!({"id": tenant}));
    let context = json!({ "tenant": tenant_json }).to_string();
    let mut out = Vec::new();
    event.write_enriched(
        &mut out,
        &[
            ("context", context.as_bytes()),
            ("enrichment", br#"{"status":"unmatched"}"#),
        ],
    );
    (event.event_id.to_string(), out)
}

/// Sends `json` to `sink` now and reports status and latency. File sinks get the line
/// appended; Kafka sinks get it produced (key = the canary's event id).
pub async fn send(sink: &SinkConfig, event_id: &str, json: &[u8]) -> ProbeResult {
    match &sink.kind {
        SinkKind::File { path } => thoth_sinks::append_one_file(path, json),
        SinkKind::Kafka(kafka) => {
            thoth_sinks::produce_one_kafka(kafka, event_id, json, CANARY_TIMEOUT).await
        }
        _ => match destinations::build(sink) {
            Ok(Some(destination)) => {
                match tokio::time::timeout(
                    CANARY_TIMEOUT,
                    thoth_sinks::send_one(&*destination, &sink.http, json),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => ProbeResult {
                        ok: false,
                        status: None,
                        latency_ms: CANARY_TIMEOUT.as_millis() as u64,
                        error: Some(format!("no answer within {} s", CANARY_TIMEOUT.as_secs())),
                    },
                }
            }
            Ok(None) => unreachable!("file and kafka sinks are handled above"),
            Err(e) => ProbeResult {
                ok: false,
                status: None,
                latency_ms: 0,
                error: Some(e),
            },
        },
    }
}
