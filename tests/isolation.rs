//! Tenant isolation under load: tenant A floods past its rate limit while the sink scoped to
//! tenant B is slow. B's events still flow, A gets 429s, nothing accepted is lost, and no event
//! reaches a sink scoped to the other tenant. Prints the figures recorded in RELIABILITY.md.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::hec::{Fault, Hec};
use support::*;

const HEC_TOKEN: &str = "isolation-hec-token";
const A_LIMIT: u64 = 2000;
const B_LIMIT: u64 = 1000;

#[derive(Default)]
struct Tally {
    tried: AtomicU64,
    accepted: AtomicU64,
    rate_limited: AtomicU64,
    unavailable: AtomicU64,
    accepted_ids: Mutex<Vec<String>>,
}

fn send_batch(
    c: &reqwest::blocking::Client,
    gw: &Gateway,
    token: &str,
    ids: Vec<String>,
    tenant: &str,
    endpoint: &str,
    t: &Tally,
) -> u16 {
    let body: String = ids
        .iter()
        .map(|id| decision(id, tenant, endpoint) + "\n")
        .collect();
    t.tried.fetch_add(ids.len() as u64, Ordering::Relaxed);
    let (status, resp, headers) = post_ndjson(c, gw, token, body);
    match status {
        200 => {
            t.accepted.fetch_add(ids.len() as u64, Ordering::Relaxed);
            t.accepted_ids.lock().unwrap().extend(ids);
        }
        429 => {
            assert_eq!(resp["error"], "rate_limited", "{resp}");
            assert!(headers.contains_key("retry-after"));
            t.rate_limited
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
        503 => {
            t.unavailable.fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
        other => panic!("unexpected {other}: {resp}"),
    }
    status
}

#[test]
fn a_flooding_tenant_is_limited_and_a_slow_sink_of_another_tenant_loses_nothing() {
    let hec = Hec::start(HEC_TOKEN);
    // Tenant B's Splunk is slow: every request waits 200 ms.
    hec.push_faults((0..10_000).map(|_| Fault::Delay(Duration::from_millis(200))));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[sinks.acme_archive]
type = "file"
path = "{acme}"
tenants = ["acme"]
[sinks.globex_splunk]
type = "splunk_hec"
endpoint = "{hec}"
token = "{HEC_TOKEN}"
tenants = ["globex"]
[sinks.globex_splunk.batch]
max_events = 100
timeout = "50ms"
"#,
        acme = dir.path().join("acme.ndjson").display(),
        hec = hec.url(),
    );
    let text = config_text(dir.path(), "", "", &extra)
        .replace(
            "tenant_id = \"acme\"\ntoken = \"acme-token\"",
            &format!("tenant_id = \"acme\"\ntoken = \"acme-token\"\nmax_events_per_second = {A_LIMIT}"),
        )
        .replace(
            "tenant_id = \"globex\"\ntoken = \"globex-token\"",
            &format!("tenant_id = \"globex\"\ntoken = \"globex-token\"\nmax_events_per_second = {B_LIMIT}"),
        );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let gw = Arc::new(Gateway::start(&cfg));

    let a = Arc::new(Tally::default());
    let b = Arc::new(Tally::default());
    let b_done = Arc::new(AtomicBool::new(false));
    // Tenant A: four clients flooding 200-event batches until B is done and A was limited.
    let flooders: Vec<_> = (0..4)
        .map(|worker| {
            let (gw, a, b_done) = (gw.clone(), a.clone(), b_done.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut n = 0;
                while !(b_done.load(Ordering::Relaxed)
                    && a.rate_limited.load(Ordering::Relaxed) > 0)
                {
                    let ids = (0..200).map(|i| format!("a-{worker}-{n}-{i}")).collect();
                    send_batch(&c, &gw, "acme-token", ids, "acme", "ep-1001", &a);
                    n += 1;
                }
            })
        })
        .collect();
    // Tenant B: 50 batches of 20 at its own pace, well under its limit.
    {
        let c = client();
        for n in 0..50 {
            let ids = (0..20).map(|i| format!("b-{n}-{i}")).collect();
            let status = send_batch(&c, &gw, "globex-token", ids, "globex", "ep-2001", &b);
            assert_ne!(status, 429, "tenant B must never be limited by A's flood");
            std::thread::sleep(Duration::from_millis(50));
        }
        b_done.store(true, Ordering::Relaxed);
    }
    for f in flooders {
        f.join().unwrap();
    }

    // Everything accepted is delivered to its tenant's sink and to the catch-all, and nothing
    // crosses over.
    let a_ids: HashSet<String> = a.accepted_ids.lock().unwrap().iter().cloned().collect();
    let b_ids: HashSet<String> = b.accepted_ids.lock().unwrap().iter().cloned().collect();
    let ids_in = |path: &std::path::Path| -> HashSet<String> {
        read_ndjson(path)
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let acme_file = dir.path().join("acme.ndjson");
    wait_until("tenant A's accepted events are archived", || {
        ids_in(&acme_file).len() >= a_ids.len()
    });
    wait_until("tenant B's accepted events are in Splunk", || {
        hec.indexed_ids().len() >= b_ids.len()
    });
    wait_until("the catch-all has everything", || {
        ids_in(&out_path(dir.path())).len() >= a_ids.len() + b_ids.len()
    });
    let archived = ids_in(&acme_file);
    let splunk: HashSet<String> = hec.indexed_ids().into_iter().collect();
    let all = ids_in(&out_path(dir.path()));
    let lost_a = a_ids
        .iter()
        .filter(|id| !archived.contains(*id) || !all.contains(*id))
        .count();
    let lost_b = b_ids
        .iter()
        .filter(|id| !splunk.contains(*id) || !all.contains(*id))
        .count();
    let crossed = archived.iter().filter(|id| id.starts_with("b-")).count()
        + splunk.iter().filter(|id| id.starts_with("a-")).count();
    let f = |t: &Tally| {
        (
            t.tried.load(Ordering::Relaxed),
            t.rate_limited.load(Ordering::Relaxed),
            t.unavailable.load(Ordering::Relaxed),
            t.accepted.load(Ordering::Relaxed),
        )
    };
    let (a_tried, a_limited, a_unavail, a_accepted) = f(&a);
    let (b_tried, b_limited, b_unavail, b_accepted) = f(&b);
    eprintln!(
        "isolation figures: tenant A tried {a_tried}, rate-limited {a_limited}, 503 {a_unavail}, accepted {a_accepted}, delivered {}, lost {lost_a}; \
         tenant B tried {b_tried}, rate-limited {b_limited}, 503 {b_unavail}, accepted {b_accepted}, delivered {}, lost {lost_b}; crossed tenants {crossed}",
        archived.len(),
        splunk.len(),
    );
    assert!(a_limited > 0, "A was rate-limited");
    assert_eq!(b_limited, 0);
    assert_eq!(b_accepted, 1000, "every B event accepted");
    assert_eq!(lost_a, 0);
    assert_eq!(lost_b, 0);
    assert_eq!(crossed, 0);
    assert!(hec.violations().is_empty(), "{:?}", hec.violations());
}
