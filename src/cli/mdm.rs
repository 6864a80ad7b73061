//! `thoth-gateway mdm sync --config PATH [--provider NAME] [--json]`: one sync of the MDM API
//! providers now. The snapshots are stored where a running gateway loads them (it picks them up
//! within a second). With `[state] backend = "redis"` it takes each provider's sync lease
//! like a replica does: a provider whose lease a replica holds is reported, not synced twice.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use thoth_config::MdmSource;

/// Returns the exit code: 0 every sync worked, 1 one failed, 2 bad usage or config.
pub fn sync(config_path: &Path, only: Option<&str>, json_out: bool) -> i32 {
    let config = match super::load_config_or_exit(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let providers: Vec<_> = config
        .mdm
        .providers
        .iter()
        .filter(|p| only.is_none_or(|n| n == p.name))
        .collect();
    if let Some(name) = only {
        match providers.first() {
            None => {
                eprintln!("no [[mdm.providers]] named {name:?}");
                return 2;
            }
            Some(p) if !matches!(p.source, MdmSource::Jamf(_) | MdmSource::Intune(_)) => {
                eprintln!(
                    "provider {name:?} has no API to sync from (it reads a file or takes pushes)"
                );
                return 2;
            }
            Some(_) => {}
        }
    }
    let runtime = match crate::cli::command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let shared = runtime.block_on(async {
        let shared = thoth_state::SharedState::start(
            &config.state,
            thoth_state::StateMetrics::unregistered(),
        )
        .ok()?;
        if shared.backend() == "redis" && !shared.wait_ready(Duration::from_secs(2)).await {
            eprintln!(
                "shared state unreachable ({}): syncing without the lease",
                shared.status().last_error.unwrap_or_default()
            );
        }
        Some(shared)
    });
    let shared = shared.unwrap_or_else(thoth_state::SharedState::local);
    let mut reports = Vec::new();
    let mut ok = true;
    for p in providers {
        if !matches!(p.source, MdmSource::Jamf(_) | MdmSource::Intune(_)) {
            continue;
        }
        let name = p.name.clone();
        let progress: thoth_enrich::Progress = Arc::new(move |n, total| match total {
            Some(t) => eprintln!("{name}: {n}/{t} endpoints"),
            None => eprintln!("{name}: {n} endpoints"),
        });
        let result = runtime.block_on(thoth_enrich::with_lease(
            &shared,
            &p.name,
            config.mdm.refresh_interval,
            thoth_enrich::sync_provider(p, progress),
        ));
        let result = result.unwrap_or_else(|| {
            Err(thoth_enrich::MdmError::Storage(
                "another replica holds this provider's sync lease and syncs it; its snapshot reaches every replica through the shared state".into(),
            ))
        });
        let report = match result {
            Ok(c) => json!({"provider": p.name, "kind": p.kind.as_str(), "imported": c.imported,
                            "upserted": c.upserted, "unchanged": c.unchanged, "removed": c.removed, "errors": []}),
            Err(e) => {
                ok = false;
                json!({"provider": p.name, "kind": p.kind.as_str(), "imported": 0, "upserted": 0,
                       "unchanged": 0, "removed": 0, "errors": [e.to_string()]})
            }
        };
        if !json_out {
            if report["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                println!(
                    "{}: FAILED: {}",
                    p.name,
                    report["errors"][0].as_str().unwrap_or("")
                );
            } else {
                println!(
                    "{}: {} imported, {} upserted, {} unchanged, {} removed",
                    p.name,
                    report["imported"],
                    report["upserted"],
                    report["unchanged"],
                    report["removed"]
                );
            }
        }
        reports.push(report);
    }
    if json_out {
        println!("{}", json!({"ok": ok, "providers": reports}));
    }
    i32::from(!ok)
}
