//! `thoth-gateway validate`: every config error with its key path, and the files it names.

use std::path::Path;

use serde_json::json;
use thoth_config::{Config, ConfigError};

use crate::programs::Programs;

struct Summary {
    /// The config's and the VRL programs' warnings (they do not make the config invalid).
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
    match load_checked(path) {
        Ok(checked) => {
            let config = &checked.config;
            let summary = Summary {
                warnings: config
                    .warnings
                    .iter()
                    .cloned()
                    .chain(checked.programs.warnings.iter().cloned().map(vrl_error))
                    .collect(),
                tenants: config.tenants.len(),
                tokens: config.api.tokens.len(),
                mdm_providers: config.mdm.providers.len(),
                mdm_endpoints: checked.mdm_endpoints,
                sinks: config.sinks.keys().cloned().collect(),
            };
            (Vec::new(), Some(summary))
        }
        Err(errors) => (errors, None),
    }
}

/// A config that passed every check of `validate`, with its compiled programs.
pub struct Checked {
    pub config: Config,
    pub programs: Programs,
    pub mdm_endpoints: usize,
}

/// Every check of `validate` (also what a reload must pass): the config, every VRL program,
/// and the MDM snapshot files it names.
pub fn load_checked(path: &Path) -> Result<Checked, Vec<ConfigError>> {
    let config = Config::load(path)?;
    let mut errors = Vec::new();
    let programs = match Programs::compile(&config) {
        Ok(p) => Some(p),
        Err(diagnostics) => {
            errors.extend(diagnostics.into_iter().map(vrl_error));
            None
        }
    };
    if let Some(tls) = &config.api.tls {
        if let Err(message) = thoth_ingest::TlsSetup::new(tls) {
            errors.push(ConfigError {
                path: "api.tls".into(),
                message: message.to_string(),
            });
        }
    }
    let mut mdm_endpoints = 0;
    for (i, p) in config.mdm.providers.iter().enumerate() {
        // An API or push provider has no snapshot until its first sync or push.
        if !matches!(p.source, thoth_config::MdmSource::File) && !p.file.exists() {
            continue;
        }
        match thoth_enrich::load_provider(p) {
            Ok(snap) => mdm_endpoints += snap.records.len(),
            Err(message) => errors.push(ConfigError {
                path: format!("mdm.providers[{i}].file"),
                message: message.to_string(),
            }),
        }
    }
    match programs {
        Some(programs) if errors.is_empty() => Ok(Checked {
            config,
            programs,
            mdm_endpoints,
        }),
        _ => Err(errors),
    }
}
