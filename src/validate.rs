//! `thoth-gateway validate`: every config error with its key path, and the files it names.

use std::path::Path;

use serde_json::json;
use thoth_config::{Config, ConfigError};

struct Summary {
    /// VRL warnings (they do not make the config invalid).
    warnings: Vec<ConfigError>,
    tenants: usize,
    tokens: usize,
    mdm_providers: usize,
    mdm_endpoints: usize,
    sinks: Vec<String>,
}

/// A VRL diagnostic as a config error: the program's key, then the line and column in the
/// program, VRL's code and message, and VRL's own rendering.
fn vrl_error(d: thoth_transform::VrlDiagnostic) -> ConfigError {
    ConfigError {
        path: d.key.clone(),
        message: format!(
            "line {}, column {}: {}[E{:03}]: {}\n{}",
            d.line,
            d.column,
            if d.error { "error" } else { "warning" },
            d.code,
            d.message,
            d.rendered.trim_end()
        ),
    }
}

/// Checks a config file, including the MDM snapshot files it names (a broken snapshot would
/// leave events unmatched). Returns the process exit code: 0 valid, 2 invalid.
pub fn run(path: &Path, json: bool) -> i32 {
    let (errors, summary) = check(path);
    let ok = errors.is_empty();
    if json {
        let errors: Vec<_> = errors
            .iter()
            .map(|e| json!({"path": e.path, "message": e.message}))
            .collect();
        let warnings: Vec<_> = summary
            .as_ref()
            .map(|s| {
                s.warnings
                    .iter()
                    .map(|e| json!({"path": e.path, "message": e.message}))
                    .collect()
            })
            .unwrap_or_default();
        let summary = summary.filter(|_| ok).map(|s| {
            json!({
                "tenants": s.tenants,
                "tokens": s.tokens,
                "mdm_providers": s.mdm_providers,
                "mdm_endpoints": s.mdm_endpoints,
                "sinks": s.sinks,
            })
        });
        println!(
            "{}",
            json!({"ok": ok, "config": path.display().to_string(), "errors": errors, "warnings": warnings, "summary": summary})
        );
    } else if let (true, Some(s)) = (ok, &summary) {
        for w in &s.warnings {
            println!("warning: {}: {}", w.path, w.message);
        }
        println!(
            "{}: valid ({} tenants, {} tokens, {} MDM providers with {} endpoints, sinks: {})",
            path.display(),
            s.tenants,
            s.tokens,
            s.mdm_providers,
            s.mdm_endpoints,
            s.sinks.join(", ")
        );
    } else {
        println!("{}: {} error(s)", path.display(), errors.len());
        for e in &errors {
            if e.path.is_empty() {
                println!("  {}", e.message);
            } else {
                println!("  {}: {}", e.path, e.message);
            }
        }
    }
    if ok {
        0
    } else {
        2
    }
}

fn check(path: &Path) -> (Vec<ConfigError>, Option<Summary>) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => return (errors, None),
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    match crate::programs::Programs::compile(&config) {
        Ok(p) => warnings = p.warnings,
        Err(diagnostics) => errors.extend(diagnostics.into_iter().map(vrl_error)),
    }
    let mut endpoints = 0;
    for (i, p) in config.mdm.providers.iter().enumerate() {
        match thoth_enrich::load_provider(p) {
            Ok(snap) => endpoints += snap.records.len(),
            Err(message) => errors.push(ConfigError {
                path: format!("mdm.providers[{i}].file"),
                message,
            }),
        }
    }
    let summary = Summary {
        warnings: warnings.into_iter().map(vrl_error).collect(),
        tenants: config.tenants.len(),
        tokens: config.api.tokens.len(),
        mdm_providers: config.mdm.providers.len(),
        mdm_endpoints: endpoints,
        sinks: config.sinks.keys().cloned().collect(),
    };
    (errors, Some(summary))
}
