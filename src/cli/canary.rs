//! The canary: one tagged `webhook_test` event sent to a sink now, through its real protocol,
//! bypassing the WAL — for `test-webhook` and `verify`.
//!
//! Canaries carry `thoth_test = true` and `canary = "<command>"` so SIEM searches can find
//! (or exclude) them: `sourcetype="thoth:webhook_test" thoth_test=true` in Splunk,
//! `thoth.thoth_test: true` in Elastic, `Type == "webhook_test"` in Sentinel.

use serde_json::json;
use thoth_config::{Config, SinkConfig};
use thoth_event::{now_rfc3339, Event};
use thoth_sinks::ProbeResult;
use thoth_wal::record::EnrichedRecord;

/// A canary: its tenant, `event_id` and enriched JSON.
pub struct Canary {
    pub tenant: String,
    pub event_id: String,
    pub json: Vec<u8>,
}

/// An enriched `webhook_test` event for `sink`, of the sink's first tenant (or the config's).
pub fn event(config: &Config, sink: &SinkConfig, origin: &str) -> Canary {
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
    Canary {
        event_id: event.event_id.to_string(),
        tenant,
        json: out,
    }
}

/// Sends `json` (the canary of `tenant`) to `sink` now, through the sink's own delivery path,
/// and reports status and latency. File sinks get the line appended; Kafka sinks get it
/// produced; HTTP sinks get one request.
pub async fn send(sink: &SinkConfig, tenant: &str, json: Vec<u8>) -> ProbeResult {
    let record = EnrichedRecord::new(tenant, bytes::Bytes::from(json));
    thoth_sinks::probe(sink, record).await
}
