//! Adaptive request concurrency through the real binary: against a destination that serves
//! 6 requests at once best (each request beyond adds latency for everyone), a Splunk HEC sink
//! with the default `concurrency = "adaptive"` settles near 6 — neither flooding it like a
//! fixed high concurrency does nor crawling at one request at a time. Against one that serves
//! many requests at once but writes each answer in two sends without `TCP_NODELAY` (round
//! trips of ~1 ms and ~41 ms as Nagle meets the client's delayed ACK), the limit climbs as for
//! any fast destination instead of staying at one — jitter is not queueing.

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

/// The sink's concurrency limit now, from `/metrics`.
fn current_limit(gw: &Gateway) -> f64 {
    gw.metrics()
        .lines()
        .find(|l| l.starts_with("thoth_sink_concurrency_limit{sink=\"splunk\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("the limit is exported")
}

fn reading(stats: &ReceiverStats) -> (u64, u64) {
    (
        stats.arrivals.load(Ordering::Relaxed),
        stats.in_flight_at_arrival.load(Ordering::Relaxed),
    )
}

/// A destination that serves `BEST` requests at once best.
fn knee() -> ReceiverOptions {
    ReceiverOptions {
        knee: Some((BEST, Duration::from_millis(50))),
        ..ReceiverOptions::default()
    }
}

/// What one run saw.
struct Run {
    /// Mean requests in flight over the second half of the delivery.
    late_in_flight: f64,
    /// The gateway's limit at the end.
    limit: f64,
    /// The gateway's limit, read every 20 ms during the delivery, averaged.
    mean_limit: f64,
    /// Events per second from the first accepted to the last delivered (printed, never
    /// asserted).
    rate: f64,
}

/// Runs `events` through a gateway whose HEC sink has `concurrency`, to the destination
/// `receiver`.
fn run(concurrency: &str, events: u64, receiver: ReceiverOptions) -> Run {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let options = ReceiverOptions {
        hec_token: Some(HEC_TOKEN.into()),
        ..receiver
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
    let started = std::time::Instant::now();
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
    // The limit over time, printed for whoever reads a failure.
    let mut limits = Vec::new();
    wait_until("half is delivered", || {
        limits.push(current_limit(&gw));
        stats.hec_events.load(Ordering::Relaxed) >= events / 2
    });
    let since = reading(&stats);
    wait_until("everything is delivered", || {
        limits.push(current_limit(&gw));
        stats.hec_events.load(Ordering::Relaxed) >= events
    });
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let mean_limit = limits.iter().sum::<f64>() / limits.len() as f64;
    let late_in_flight = mean_in_flight(&stats, since);
    eprintln!("{concurrency:?}: limit every 20 ms: {limits:?}");
    let limit = current_limit(&gw);
    assert_eq!(
        stats.hec_events.load(Ordering::Relaxed),
        events,
        "each event once"
    );
    Run {
        late_in_flight,
        limit,
        mean_limit,
        rate,
    }
}

#[test]
fn an_adaptive_sink_settles_near_the_destinations_best_concurrency() {
    let Run {
        late_in_flight: mean,
        limit,
        ..
    } = run("", 30_000, knee());
    eprintln!("adaptive: mean in flight {mean:.1}, final limit {limit} (best {BEST})");
    assert!(
        mean >= BEST as f64 / 2.0 && mean <= BEST as f64 * 2.0,
        "mean requests in flight {mean:.1} should be near {BEST}"
    );
    assert!(limit <= (BEST * 2) as f64, "limit {limit}");

    // The measure tells flooding apart: a fixed concurrency of 32 keeps far more in flight.
    let Run {
        late_in_flight: flood,
        limit: fixed,
        ..
    } = run("concurrency = 32", 6_000, knee());
    eprintln!("fixed 32: mean in flight {flood:.1}");
    assert_eq!(fixed, 32.0);
    assert!(flood > BEST as f64 * 2.0, "a fixed 32 floods: {flood:.1}");
}

#[test]
fn jittery_round_trips_do_not_pin_an_adaptive_sink_at_one_request() {
    // A real delayed-ACK stall: the receiver writes each response in two sends with Nagle on,
    // so the wait is in the kernel, not in the handler; the receiver's in-flight count cannot
    // see it, so the gateway's own limit over the delivery is the measure.
    let jitter = || ReceiverOptions {
        two_sends: true,
        ..ReceiverOptions::default()
    };
    let fixed = run("concurrency = 16", 30_000, jitter());
    let adaptive = run("", 30_000, jitter());
    eprintln!(
        "two sends: fixed 16 delivers {:.0} events/s; adaptive {:.0} events/s, mean limit {:.1}, final {}",
        fixed.rate, adaptive.rate, adaptive.mean_limit, adaptive.limit
    );
    assert!(
        adaptive.mean_limit >= 16.0 * 0.8,
        "the adaptive limit averaged {:.1} over the delivery",
        adaptive.mean_limit
    );
}
