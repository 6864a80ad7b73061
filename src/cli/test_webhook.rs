//! `thoth-gateway test-webhook --config PATH --sink NAME [--json]`: one signed `webhook_test`
//! event to that sink now, through its real protocol, bypassing the WAL.

use std::path::Path;

use serde_json::json;

/// Returns the exit code: 0 delivered, 1 not, 2 bad usage or config.
pub fn run(config_path: &Path, sink_name: &str, json_out: bool) -> i32 {
    let config = match super::load_config_or_exit(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(sink) = config.sinks.get(sink_name) else {
        let names: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
        eprintln!("no sink named {sink_name:?}; sinks: {}", names.join(", "));
        return 2;
    };
    if matches!(sink.kind, thoth_config::SinkKind::File { .. }) {
        eprintln!("sink {sink_name:?} is a file sink: there is nothing to send a test to");
        return 2;
    }
    let canary = crate::cli::canary::event(&config, sink, "test-webhook");
    let event_id = canary.event_id;
    let runtime = match crate::cli::command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(crate::cli::canary::send(sink, &canary.tenant, canary.json));
    if json_out {
        println!(
            "{}",
            json!({"sink": sink_name, "ok": result.ok, "status": result.status,
                   "latency_ms": result.latency_ms, "error": result.error, "event_id": event_id})
        );
    } else if result.ok {
        println!(
            "{sink_name}: ok (HTTP {}, {} ms, event {})",
            result.status.unwrap_or(0),
            result.latency_ms,
            event_id
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
