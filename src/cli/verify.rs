//! `thoth-gateway verify --config PATH [--json]`: the deployment checklist as one command.
//!
//! 1. the config passes every check of `validate`;
//! 2. each sink takes a canary (`webhook_test`, `thoth_test = true`, `canary = "verify"`)
//!    through its real protocol — status and latency;
//! 3. each MDM provider is reachable (API providers: a live fetch, counted but not stored;
//!    file and push providers: their snapshot) with its endpoint count;
//! 4. the check-in health the running gateway persisted.
//!
//! Safe beside a running gateway: it reads the data dir but never writes it or takes its locks.
//! Exit 0 when every item is ok, 1 when one is not, 2 when the config is invalid.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::future::join_all;
use serde::Serialize;
use thoth_config::{Config, MdmProvider, MdmSource};
use thoth_enrich::CheckinTracker;
use time::OffsetDateTime;

use crate::cli::validate::{load_checked, Checked};

/// The report `verify --json` prints. Field names are stable (CI logs and SIEM evidence).
#[derive(Serialize)]
struct Report {
    ok: bool,
    config: ConfigItem,
    /// Per sink: the canary's outcome and `event_id` (to find it in the SIEM).
    sinks: BTreeMap<String, SinkItem>,
    mdm: BTreeMap<String, MdmItem>,
    checkins: CheckinsItem,
    checked_at: String,
}

#[derive(Serialize)]
struct ConfigItem {
    ok: bool,
    path: String,
    errors: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct SinkItem {
    ok: bool,
    #[serde(rename = "type")]
    kind: &'static str,
    status: Option<u16>,
    latency_ms: u64,
    event_id: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct MdmItem {
    ok: bool,
    kind: &'static str,
    source: &'static str,
    tenant_id: String,
    endpoints: usize,
    error: Option<String>,
}

#[derive(Serialize, Default)]
struct CheckinsItem {
    ok: bool,
    healthy: u64,
    stale: u64,
    never: u64,
    error: Option<String>,
}

pub fn run(path: &Path, json: bool) -> i32 {
    let checked = match load_checked(path) {
        Ok(c) => c,
        Err(errors) => {
            let report = Report {
                ok: false,
                config: ConfigItem {
                    ok: false,
                    path: path.display().to_string(),
                    errors: errors
                        .iter()
                        .map(|e| serde_json::json!({"path": e.path, "message": e.message}))
                        .collect(),
                },
                sinks: BTreeMap::new(),
                mdm: BTreeMap::new(),
                checkins: CheckinsItem::default(),
                checked_at: thoth_event::now_rfc3339(),
            };
            print(&report, json);
            return 2;
        }
    };
    let runtime = match crate::cli::command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = runtime.block_on(check(path, checked));
    print(&report, json);
    i32::from(!report.ok)
}

async fn check(path: &Path, checked: Checked) -> Report {
    let config = &checked.config;
    // Sinks and MDM providers are independent: probe them all at once.
    let sinks = join_all(config.sinks.values().map(|sink| async move {
        eprintln!("verify: sending a canary to sink {}", sink.name);
        let canary = crate::cli::canary::event(config, sink, "verify");
        let event_id = canary.event_id;
        let r = crate::cli::canary::send(sink, &canary.tenant, canary.json).await;
        (
            sink.name.clone(),
            SinkItem {
                ok: r.ok,
                kind: sink.kind.type_name(),
                status: r.status,
                latency_ms: r.latency_ms,
                event_id,
                error: r.error,
            },
        )
    }))
    .await;
    let mdm = join_all(
        config
            .mdm
            .providers
            .iter()
            .map(|p| async move { (p.name.clone(), mdm_item(p).await) }),
    )
    .await;
    let endpoints: usize = mdm.iter().map(|(_, m)| m.endpoints).sum();
    let checkins = checkins_item(config, endpoints);
    let sinks: BTreeMap<_, _> = sinks.into_iter().collect();
    let mdm: BTreeMap<_, _> = mdm.into_iter().collect();
    let ok = sinks.values().all(|s| s.ok) && mdm.values().all(|m| m.ok) && checkins.ok;
    Report {
        ok,
        config: ConfigItem {
            ok: true,
            path: path.display().to_string(),
            errors: Vec::new(),
        },
        sinks,
        mdm,
        checkins,
        checked_at: thoth_event::now_rfc3339(),
    }
}

/// One provider: API providers are fetched live (not stored: `verify` writes nothing), file
/// and push providers are read from their snapshot.
async fn mdm_item(p: &MdmProvider) -> MdmItem {
    let (source, result) = match p.source {
        MdmSource::File => ("file", load_count(p)),
        MdmSource::Push => ("push", load_count(p)),
        MdmSource::Jamf(_) | MdmSource::Intune(_) => {
            eprintln!("verify: fetching MDM provider {}", p.name);
            let progress: thoth_enrich::Progress = std::sync::Arc::new(|_, _| {});
            let fetched = thoth_enrich::fetch(p, progress).await.and_then(|bytes| {
                thoth_enrich::parse_snapshot(p.kind, &bytes, p.endpoint_id_attribute.as_deref())
                    .map(|records| records.len())
            });
            ("api", fetched.map_err(|e| e.to_string()))
        }
    };
    let (endpoints, error) = match result {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    };
    MdmItem {
        ok: error.is_none(),
        kind: p.kind.as_str(),
        source,
        tenant_id: p.tenant_id.clone(),
        endpoints,
        error,
    }
}

fn load_count(p: &MdmProvider) -> Result<usize, String> {
    if matches!(p.source, MdmSource::Push) && !p.file.exists() {
        return Err(format!(
            "no snapshot pushed yet (PUT /v1/mdm/{} with the admin token)",
            p.name
        ));
    }
    thoth_enrich::load_provider(p)
        .map(|s| s.records.len())
        .map_err(|e| e.to_string())
}

/// The check-in health the running gateway persists in `data_dir/checkins.json`.
fn checkins_item(config: &Config, mdm_endpoints: usize) -> CheckinsItem {
    let tracker = CheckinTracker::new(config.checkins.max_unknown_endpoints as usize);
    let file = config.data_dir.join("checkins.json");
    match tracker.restore(&file, OffsetDateTime::now_utc(), |_, _| true) {
        Ok(_) => {
            let (healthy, stale) =
                tracker.summary(OffsetDateTime::now_utc(), config.checkins.stale_after);
            CheckinsItem {
                ok: true,
                healthy,
                stale,
                never: (mdm_endpoints as u64).saturating_sub(healthy + stale),
                error: None,
            }
        }
        Err(e) => CheckinsItem {
            ok: false,
            error: Some(format!("cannot read {}: {e}", file.display())),
            ..CheckinsItem::default()
        },
    }
}

fn print(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("the report serializes")
        );
        return;
    }
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    println!("{} config {}", mark(report.config.ok), report.config.path);
    for e in &report.config.errors {
        println!(
            "       {}: {}",
            e["path"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        );
    }
    if !report.config.ok {
        println!("verify: FAILED (invalid config)");
        return;
    }
    for (name, s) in &report.sinks {
        let status = s.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
        match &s.error {
            None => println!(
                "{} sink {name} ({}): {status}{} ms, canary {}",
                mark(s.ok),
                s.kind,
                s.latency_ms,
                s.event_id
            ),
            Some(e) => println!("{} sink {name} ({}): {status}{e}", mark(s.ok), s.kind),
        }
    }
    for (name, m) in &report.mdm {
        match &m.error {
            None => println!(
                "{} mdm {name} ({} {}): {} endpoints",
                mark(m.ok),
                m.kind,
                m.source,
                m.endpoints
            ),
            Some(e) => println!("{} mdm {name} ({} {}): {e}", mark(m.ok), m.kind, m.source),
        }
    }
    let c = &report.checkins;
    match &c.error {
        None => println!(
            "{} check-ins: {} healthy, {} stale, {} never",
            mark(c.ok),
            c.healthy,
            c.stale,
            c.never
        ),
        Some(e) => println!("{} check-ins: {e}", mark(c.ok)),
    }
    println!(
        "{}",
        if report.ok {
            "verify: ok"
        } else {
            "verify: FAILED"
        }
    );
}
