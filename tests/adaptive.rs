//! Adaptive request concurrency through the real binary: against a destination that serves
//! 6 requests at once best (each request beyond adds latency for everyone), a Splunk HEC sink
//! with the default `concurrency = "adaptive"` settles near 6 — neither flooding it like a
//! fixed high concurrency does nor crawling at one request at a time.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use thoth_load::generate::Workload;
use thoth_load::receive::{self, ReceiverOptions, ReceiverStats};
use thoth_load::send::{self, SendOptions};

const HEC_TOKEN: &str = "adaptive-hec-token";
const BEST: u64 = 6;

/// Mean requests in flight seen by the destination between two readings.
fn mean_in_flight(stats: &ReceiverStats, since: (u64, u64)) -> f64 {
    let arrivals = stats.arrivals.load(Ordering::Relaxed) - since.0;
    let sum = stats.in_flight_at_arrival.load(Ordering::Relaxed) - since.1;
    sum as f64 / arrivals.max(1) as f64
}

fn reading(stats: &ReceiverStats) -> (u64, u64) {
    (
        stats.arrivals.load(Ordering::Relaxed),
        stats.in_flight_at_arrival.load(Ordering::Relaxed),
    )
}

/// Runs `events` through a gateway whose HEC sink has `concurrency`; returns the mean
/// in-flight requests over the second half of the delivery and the gateway's final limit.
fn run(concurrency: &str, events: u64) -> (f64, f64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = ReceiverOptions {
        hec_token: Some(HEC_TOKEN.into()),
        knee: Some((BEST, Duration::from_millis(50))),
    };
    let (addr, stats): (_, Arc<ReceiverStats>) = rt
        .block_on(receive::start("127.0.0.1:0".parse().unwrap(), options))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[sinks.splunk]\ntype = \"splunk_hec\"\nendpoint = \"http://{addr}\"\ntoken = \"{HEC_TOKEN}\"\n\
         {concurrency}\nmax_concurrency = 64\n[sinks.splunk.batch]\nmax_events = 20\ntimeout = \"10ms\"\n"
    );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", &extra)).unwrap();
    let gw = Gateway::start(&cfg);
    let report = rt
        .block_on(send::run(SendOptions {
            connections: 2,
            max_events: Some(events),
            workload: Workload {
                batch: 50,
                ..Workload::default()
            },
            ..SendOptions::to(gw.url("/v1/events").parse().unwrap(), "acme", "acme-token")
        }))
        .unwrap();
    assert_eq!(report.accepted, events);
    wait_until("half is delivered", || {
        stats.hec_events.load(Ordering::Relaxed) >= events / 2
    });
    let since = reading(&stats);
    wait_until("everything is delivered", || {
        stats.hec_events.load(Ordering::Relaxed) >= events
    });
    let mean = mean_in_flight(&stats, since);
    let limit = gw
        .metrics()
        .lines()
        .find(|l| l.starts_with("thoth_sink_concurrency_limit{sink=\"splunk\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("the limit is exported");
    assert_eq!(
        stats.hec_events.load(Ordering::Relaxed),
        events,
        "each event once"
    );
    (mean, limit)
}

#[test]
fn an_adaptive_sink_settles_near_the_destinations_best_concurrency() {
    let (mean, limit) = run("", 30_000);
    eprintln!("adaptive: mean in flight {mean:.1}, final limit {limit} (best {BEST})");
    assert!(
        mean >= BEST as f64 / 2.0 && mean <= BEST as f64 * 2.0,
        "mean requests in flight {mean:.1} should be near {BEST}"
    );
    assert!(limit <= (BEST * 2) as f64, "limit {limit}");

    // The measure tells flooding apart: a fixed concurrency of 32 keeps far more in flight.
    let (flood, fixed) = run("concurrency = 32", 6_000);
    eprintln!("fixed 32: mean in flight {flood:.1}");
    assert_eq!(fixed, 32.0);
    assert!(flood > BEST as f64 * 2.0, "a fixed 32 floods: {flood:.1}");
}
