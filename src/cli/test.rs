//! `thoth-gateway test --config PATH [--json]`: runs the config's `[[tests]]` — each input
//! event through enrichment (with the config's MDM data), the global transform and every
//! sink's route — and checks `expect_sinks`, `expect` and `expect_remap`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;
use thoth_config::{Config, ConfigTest};
use thoth_enrich::{Enricher, MdmLoader};
use thoth_event::{now_rfc3339, Event};
use thoth_sinks::Routed;
use thoth_transform::{json_to_value, TransformMetrics};
use time::OffsetDateTime;

use crate::programs::Programs;

/// Returns the exit code: 0 all pass, 1 any fails, 2 bad config.
pub fn run(config_path: &Path, json_out: bool) -> i32 {
    let config = match super::load_config_or_exit(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let programs = match Programs::compile(&config) {
        Ok(p) => p,
        Err(diagnostics) => {
            eprintln!("{}: invalid VRL", config_path.display());
            for d in diagnostics {
                eprintln!("  {d}");
            }
            return 2;
        }
    };
    let registry = prometheus::Registry::new();
    let enricher = Enricher::new(&config, &registry).expect("fresh registry");
    match MdmLoader::new(&config.mdm.providers, &config.mdm.fleet_rules, &registry) {
        Ok(mut loader) => loader.load_into(&enricher),
        Err(e) => {
            eprintln!("cannot load MDM data: {e}");
            return 2;
        }
    }
    let metrics = TransformMetrics::unregistered();
    let results: Vec<(String, Vec<String>)> = config
        .tests
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                run_test(&config, &programs, &enricher, &metrics, t),
            )
        })
        .collect();
    let ok = results.iter().all(|(_, f)| f.is_empty());
    if json_out {
        let tests: Vec<_> = results
            .iter()
            .map(|(name, failures)| json!({"name": name, "ok": failures.is_empty(), "failures": failures}))
            .collect();
        println!("{}", json!({"ok": ok, "tests": tests}));
    } else {
        for (name, failures) in &results {
            if failures.is_empty() {
                println!("PASS {name}");
            } else {
                println!("FAIL {name}");
                for f in failures {
                    for (i, line) in f.lines().enumerate() {
                        println!("  {} {line}", if i == 0 { "-" } else { " " });
                    }
                }
            }
        }
        let failed = results.iter().filter(|(_, f)| !f.is_empty()).count();
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    i32::from(!ok)
}

fn names(set: &BTreeSet<String>) -> String {
    format!("[{}]", set.iter().cloned().collect::<Vec<_>>().join(", "))
}

/// The failures of one test (empty: it passed).
fn run_test(
    config: &Config,
    programs: &Programs,
    enricher: &Enricher,
    metrics: &TransformMetrics,
    test: &ConfigTest,
) -> Vec<String> {
    let mut failures = Vec::new();
    let event = match Event::parse(test.input.to_string().as_bytes(), &now_rfc3339()) {
        Ok(e) => e,
        Err(e) => return vec![format!("{}.input is not a valid event: {e}", test.path)],
    };
    if config.tenant(&event.tenant_id).is_none() {
        return vec![format!(
            "{}.input: tenant {:?} is not in [[tenants]]",
            test.path, event.tenant_id
        )];
    }
    let enriched = enricher.enrich(&event, OffsetDateTime::now_utc());
    let output = match &programs.global {
        None => enriched,
        Some(p) => match p.remap_json(&enriched) {
            Ok(j) => j,
            Err(e) => return vec![format!("the global transform refused the event: {e}")],
        },
    };
    let mut reached = BTreeSet::new();
    let mut remapped = std::collections::HashMap::new();
    for (name, sink) in &config.sinks {
        match programs
            .route(sink, metrics)
            .route(&event.tenant_id, &output)
        {
            Routed::Skip => {}
            Routed::Send(json) => {
                reached.insert(name.clone());
                remapped.insert(name.clone(), json.into_owned());
            }
            Routed::Failed(reason) => {
                reached.insert(name.clone());
                failures.push(format!("sink {name}: the remap failed: {reason}"));
            }
        }
    }
    if let Some(expected) = &test.expect_sinks {
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        if expected != reached {
            let missing: BTreeSet<_> = expected.difference(&reached).cloned().collect();
            let extra: BTreeSet<_> = reached.difference(&expected).cloned().collect();
            failures.push(format!(
                "expect_sinks: expected {} but the event reaches {}\nmissing: {}, unexpected: {}",
                names(&expected),
                names(&reached),
                names(&missing),
                names(&extra)
            ));
        }
    }
    let assert_on = |key: &str, json: &[u8]| -> Option<String> {
        let program = programs.assertions.get(key)?;
        let value = match json_to_value(json) {
            Ok(v) => v,
            Err(e) => return Some(format!("{key}: {e}")),
        };
        program.run(value).err().map(|e| {
            format!(
                "{key}: {e}\nactual: {}",
                String::from_utf8_lossy(json)
                    .chars()
                    .take(2000)
                    .collect::<String>()
            )
        })
    };
    if let Some(expect) = &test.expect {
        failures.extend(assert_on(&expect.key, &output));
    }
    for (sink, source) in &test.expect_remap {
        match remapped.get(sink) {
            Some(json) => failures.extend(assert_on(&source.key, json)),
            None => failures.push(format!(
                "{}: sink {sink} does not take this event",
                source.key
            )),
        }
    }
    failures
}
