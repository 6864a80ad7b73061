//! `thoth-gateway test-webhook --config PATH --sink NAME [--json]`: one signed `webhook_test`
//! event to that sink now, through its real protocol, bypassing the WAL.

use std::path::Path;

use serde_json::json;
use thoth_config::Config;
use thoth_event::{now_rfc3339, Event};

use crate::destinations;

/// Returns the exit code: 0 delivered, 1 not, 2 bad usage or config.
pub fn run(config_path: &Path, sink_name: &str, json_out: bool) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid config", config_path.display());
            for e in errors {
                eprintln!("  {e}");
            }
            return 2;
        }
    };
    let Some(sink) = config.sinks.get(sink_name) else {
        let names: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
        eprintln!("no sink named {sink_name:?}; sinks: {}", names.join(", "));
        return 2;
    };
    let destination = match destinations::build(sink) {
        Ok(Some(d)) => d,
        Ok(None) => {
            eprintln!("sink {sink_name:?} is a file sink: there is nothing to send a test to");
            return 2;
        }
        Err(e) => {
            eprintln!("sinks.{sink_name}: {e}");
            return 2;
        }
    };
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
        "title": "thoth-gateway test-webhook",
        "description": format!("test event for sink {sink_name}"),
        "source": "thoth-gateway test-webhook",
        "thoth_test": true,
    });
    let now = now_rfc3339();
    let event = Event::parse(event.to_string().as_bytes(), &now).expect("the test event is valid");
    let mut json = Vec::new();
    let tenant_json = config
        .tenant(&tenant)
        .map(|t| json!({"id": t.id, "name": t.name}))
        .unwrap_or_else(|| json!({"id": tenant}));
    let context = json!({ "tenant": tenant_json }).to_string();
    event.write_enriched(
        &mut json,
        &[
            ("context", context.as_bytes()),
            ("enrichment", br#"{"status":"unmatched"}"#),
        ],
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(thoth_sinks::send_one(&*destination, &sink.http, &json));
    if json_out {
        println!(
            "{}",
            json!({"sink": sink_name, "ok": result.ok, "status": result.status,
                   "latency_ms": result.latency_ms, "error": result.error, "event_id": event.event_id})
        );
    } else if result.ok {
        println!(
            "{sink_name}: ok (HTTP {}, {} ms, event {})",
            result.status.unwrap_or(0),
            result.latency_ms,
            event.event_id
        );
    } else {
        println!(
            "{sink_name}: FAILED{} after {} ms: {}",
            result
                .status
                .map(|s| format!(" (HTTP {s})"))
                .unwrap_or_default(),
            result.latency_ms,
            result.error.as_deref().unwrap_or("unknown error")
        );
    }
    i32::from(!result.ok)
}
