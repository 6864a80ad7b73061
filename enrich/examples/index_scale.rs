//! The endpoint index at scale: build time, lookup latency and memory per endpoint for
//! 10 000, 100 000 and 1 000 000 endpoints.
//!
//! `cargo run --release -p thoth-enrich --example index_scale`

use std::hint::black_box;
use std::time::Instant;

use thoth_config::{FleetRule, MdmKind};
use thoth_enrich::{EndpointIndex, EndpointRecord, ProviderSnapshot};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn record(i: usize) -> EndpointRecord {
    EndpointRecord {
        mdm_device_id: format!("{}", 100_000 + i),
        serial: Some(format!("C02SN{i:08}")),
        hostname: Some(format!("mac-{i:07}")),
        os: Some("macOS".into()),
        os_version: Some("15.1".into()),
        owner: Some(format!("user{i}@acme.com")),
        department: Some(
            if i.is_multiple_of(3) {
                "Engineering"
            } else {
                "Sales"
            }
            .into(),
        ),
        site: Some("Berlin".into()),
        category: None,
        model: Some("MacBook Pro (14-inch, 2023)".into()),
        managed: true,
        compliant: None,
        last_sync: Some("2026-11-28T09:55:00Z".into()),
        endpoint_id: Some(format!("ep-{i}")),
    }
}

fn main() {
    let rules = vec![FleetRule {
        tenant_id: Some("acme".into()),
        when: vec![("department".into(), "Engineering".into())],
        fleet_id: "eng".into(),
        fleet_name: "Engineering".into(),
    }];
    println!("| endpoints | build | lookup by id | by serial | by hostname | RSS per endpoint |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in [10_000usize, 100_000, 1_000_000] {
        let snapshot = ProviderSnapshot {
            provider: "acme-jamf".into(),
            tenant_id: "acme".into(),
            kind: MdmKind::Jamf,
            taken_at: "2026-11-28T09:55:00Z".into(),
            records: (0..n).map(record).collect(),
        };
        let before = rss_kib();
        let started = Instant::now();
        let index = EndpointIndex::build(std::slice::from_ref(&snapshot), &rules);
        let build = started.elapsed();
        // Measured while the snapshot is alive, so the growth is the index alone (measured
        // after dropping it, the records' freed memory once hid part of the index).
        let per_endpoint = (rss_kib().saturating_sub(before) * 1024) as f64 / n as f64;
        drop(snapshot);

        let probes: Vec<(String, String, String)> = (0..100_000)
            .map(|k| {
                let i = (k * 7919) % n;
                (
                    format!("ep-{i}"),
                    format!("C02SN{i:08}"),
                    format!("MAC-{i:07}"),
                )
            })
            .collect();
        let time = |f: &dyn Fn(&(String, String, String)) -> bool| {
            let started = Instant::now();
            let mut hits = 0;
            for p in &probes {
                hits += usize::from(f(p));
            }
            assert_eq!(hits, probes.len());
            started.elapsed().as_nanos() as f64 / probes.len() as f64
        };
        let by_id = time(&|p| black_box(index.lookup("acme", Some(&p.0), None, None)).is_some());
        let by_serial =
            time(&|p| black_box(index.lookup("acme", None, Some(&p.1), None)).is_some());
        let by_host = time(&|p| black_box(index.lookup("acme", None, None, Some(&p.2))).is_some());
        println!(
            "| {n} | {:.2} s | {by_id:.0} ns | {by_serial:.0} ns | {by_host:.0} ns | {per_endpoint:.0} B |",
            build.as_secs_f64()
        );
    }
}
