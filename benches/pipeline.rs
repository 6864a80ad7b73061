//! End-to-end pipeline benchmark (issue 10): the real binary with the WAL on disk
//! (`fsync = "always"`), enrichment against a generated Jamf snapshot, a 5-line global VRL
//! transform, and gzip sinks to the fast local HEC and `_bulk` receivers of `thoth-load`,
//! driven by `thoth-load`'s generator in this process.
//!
//! ```text
//! cargo bench --bench pipeline                        # HEC only, 100 000 endpoints, 20 s runs
//! cargo bench --bench pipeline -- --sinks all         # HEC + _bulk + file
//! cargo bench --bench pipeline -- --endpoints 1000000 --seconds 30 --connections 8
//! cargo bench --bench pipeline -- --sink-down 600     # HEC down 10 min at --down-rate (5000/s): RSS
//! cargo bench --bench pipeline -- --two-sends         # a HEC receiver with delayed-ACK stalls
//! ```
//!
//! Prints sustained events/s and MB/s in and out, ingest→delivered latency p50/p99 (from
//! `thoth_event_delivery_seconds`), peak RSS, CPU seconds per million events, the share of the
//! accepted events delivered while the load ran, the HEC sink's concurrency limit once a
//! second, then the same at
//! 25 %, 50 % and 75 % of the measured maximum rate; and one JSON line with everything.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thoth_load::generate::Workload;
use thoth_load::receive::{self, ReceiverOptions, ReceiverStats};
use thoth_load::send::{self, SendOptions};
use thoth_load::summary::{histogram_buckets, histogram_quantile};

const BIN: &str = env!("CARGO_BIN_EXE_thoth-gateway");
const HEC_TOKEN: &str = "bench-hec-token";
const TOKEN: &str = "bench-acme-token";

struct Args {
    seconds: u64,
    endpoints: u32,
    all_sinks: bool,
    connections: usize,
    batch: usize,
    sink_down: Option<u64>,
    down_rate: f64,
    fixed_rates: bool,
    /// The receiver writes responses in two sends with Nagle on (delayed-ACK stalls).
    two_sends: bool,
}

impl Args {
    /// Our flags after `--`; cargo's own (`--bench`) are ignored.
    fn parse() -> Args {
        let mut a = Args {
            seconds: 20,
            endpoints: 100_000,
            all_sinks: false,
            connections: 4,
            batch: 500,
            sink_down: None,
            down_rate: 5_000.0,
            fixed_rates: true,
            two_sends: false,
        };
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < argv.len() {
            let value = || argv.get(i + 1).cloned().unwrap_or_default();
            match argv[i].as_str() {
                "--seconds" => a.seconds = value().parse().expect("--seconds N"),
                "--endpoints" => a.endpoints = value().parse().expect("--endpoints N"),
                "--connections" => a.connections = value().parse().expect("--connections N"),
                "--batch" => a.batch = value().parse().expect("--batch N"),
                "--sinks" => a.all_sinks = value() == "all",
                "--down-rate" => a.down_rate = value().parse().expect("--down-rate EVENTS/S"),
                "--sink-down" => a.sink_down = Some(value().parse().expect("--sink-down SECONDS")),
                "--no-fixed-rates" => {
                    a.fixed_rates = false;
                    i += 1;
                    continue;
                }
                "--two-sends" => {
                    a.two_sends = true;
                    i += 1;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        a
    }
}

const TRANSFORM: &str = r#"
.severity_score = if .risk == "critical" { 4 } else if .risk == "high" { 3 } else { 1 }
.fleet = .context.fleet.id
.owner = downcase(string(.context.endpoint.owner) ?? "")
del(.proxy_version)
.gateway = "thoth"
"#;

fn config(dir: &Path, receiver: &str, all_sinks: bool, hec_url: &str) -> String {
    let mut c = format!(
        r#"data_dir = "{data}"
[api]
listen = "127.0.0.1:0"
[[api.tokens]]
tenant_id = "acme"
token = "{TOKEN}"
[wal]
max_bytes = "8GiB"
fsync = "always"
[[tenants]]
id = "acme"
name = "Acme Corp"
compliance_profile = "soc2"
[[mdm.providers]]
name = "acme-jamf"
tenant_id = "acme"
kind = "jamf"
file = "{snapshot}"
endpoint_id_attribute = "Thoth Endpoint ID"
[[mdm.fleet_rules]]
tenant_id = "acme"
when = {{ department = "Engineering" }}
fleet = {{ id = "eng-macs", name = "Engineering Macs" }}
[[mdm.fleet_rules]]
tenant_id = "acme"
when = {{ os = "macOS" }}
fleet = {{ id = "acme-macs", name = "Acme Macs" }}
[transform]
source = '''{TRANSFORM}'''
[sinks.splunk]
type = "splunk_hec"
endpoint = "{hec_url}"
token = "{HEC_TOKEN}"
compression = "gzip"
"#,
        data = dir.join("data").display(),
        snapshot = dir.join("acme-jamf.json").display(),
    );
    if all_sinks {
        c.push_str(&format!(
            r#"[sinks.elastic]
type = "elasticsearch"
endpoints = ["http://{receiver}"]
compression = "gzip"
[sinks.archive]
type = "file"
path = "{}"
"#,
            dir.join("archive.ndjson").display()
        ));
    }
    c
}

/// The gateway process, its address and a thread draining its stderr.
struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start(config: &Path) -> Gateway {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start thoth-gateway");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                        .collect();
                    let _ = tx.send(addr);
                }
                if line.contains("ERROR") {
                    eprintln!("gateway: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the gateway did not start listening");
        Gateway { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        match reqwest::blocking::get(format!("http://{}{path}", self.addr)) {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// User + system CPU seconds of the process so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Resident set size now and at its peak, MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_seconds_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th field overall.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY-free: the clock tick is 100 Hz on every Linux this runs on (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

struct Snapshot {
    at: Instant,
    delivery: Vec<(f64, f64)>,
    gateway_cpu: f64,
    load_cpu: f64,
    hec_events: u64,
    bulk_events: u64,
    wire_bytes: u64,
}

fn snapshot(gw: &Gateway, stats: &ReceiverStats) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        delivery: histogram_buckets(
            &gw.metrics(),
            "thoth_event_delivery_seconds",
            "sink=\"splunk\"",
        ),
        gateway_cpu: gw.cpu_seconds(),
        load_cpu: cpu_seconds_of("/proc/self/stat"),
        hec_events: stats.hec_events.load(Ordering::Relaxed),
        bulk_events: stats.bulk_events.load(Ordering::Relaxed),
        wire_bytes: stats.wire_bytes.load(Ordering::Relaxed),
    }
}

struct Run {
    label: String,
    accepted: u64,
    retried: u64,
    rejected: u64,
    seconds: f64,
    in_mb: f64,
    out_mb: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    request_p99_ms: Option<f64>,
    gateway_cpu_per_million: f64,
    load_cpu_per_million: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    /// The HEC sink's concurrency limit when the phase ended.
    hec_limit: Option<f64>,
    /// The HEC sink's limit once a second while the load ran.
    hec_limits: Vec<f64>,
    /// Events the HEC receiver counted while the load ran, over the events accepted.
    delivered_during_load: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.seconds
    }

    fn print(&self) {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        println!(
            "{:<14} {:>9.0} ev/s  in {:>6.1} MB/s  out {:>5.1} MB/s  delivery p50 {:>5} ms  p99 {:>5} ms  \
             request p99 {:>5} ms  CPU {:>5.1} s/M events (load {:.1})  RSS {:.0} MiB (peak {:.0})  \
             delivered during load {:>3.0} %  HEC limit {} (per second: {:?})  retried {}  rejected {}",
            self.label,
            self.rate(),
            self.in_mb / self.seconds,
            self.out_mb / self.seconds,
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.request_p99_ms),
            self.gateway_cpu_per_million,
            self.load_cpu_per_million,
            self.rss_mib,
            self.peak_rss_mib,
            self.delivered_during_load * 100.0,
            self.hec_limit.map_or("-".into(), |l| l.to_string()),
            self.hec_limits,
            self.retried,
            self.rejected,
        );
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "label": self.label, "events_per_second": self.rate(), "accepted": self.accepted,
            "in_mb_per_second": self.in_mb / self.seconds, "out_mb_per_second": self.out_mb / self.seconds,
            "delivery_p50_ms": self.p50_ms, "delivery_p99_ms": self.p99_ms,
            "request_p99_ms": self.request_p99_ms,
            "gateway_cpu_seconds_per_million": self.gateway_cpu_per_million,
            "load_cpu_seconds_per_million": self.load_cpu_per_million,
            "rss_mib": self.rss_mib, "peak_rss_mib": self.peak_rss_mib, "hec_concurrency_limit": self.hec_limit,
            "hec_concurrency_limit_per_second": self.hec_limits,
            "delivered_during_load": self.delivered_during_load,
            "retried_requests": self.retried, "rejected": self.rejected,
        })
    }
}

/// The generator's settings for a phase against `gw`.
fn load(
    gw: &Gateway,
    args: &Args,
    rate: Option<f64>,
    duration: Duration,
    progress: bool,
) -> SendOptions {
    let target = format!("http://{}/v1/events", gw.addr).parse().unwrap();
    SendOptions {
        connections: args.connections,
        rate,
        duration: Some(duration),
        workload: Workload {
            endpoints: args.endpoints,
            batch: args.batch,
            ..Workload::default()
        },
        progress,
        ..SendOptions::to(target, "acme", TOKEN)
    }
}

/// One load phase: send for `seconds` (at `rate`, or as fast as possible), then wait until
/// every accepted event reached the receivers; the rate is over the whole time to delivery.
fn phase(
    rt: &tokio::runtime::Runtime,
    gw: &Gateway,
    stats: &Arc<ReceiverStats>,
    args: &Args,
    label: &str,
    rate: Option<f64>,
) -> Run {
    let options = load(gw, args, rate, Duration::from_secs(args.seconds), true);
    let before = snapshot(gw, stats);
    let load = rt.spawn(send::run(options));
    let mut hec_limits = Vec::new();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        if hec_limits.len() < (before.at.elapsed().as_secs() as usize) {
            hec_limits.extend(hec_limit_of(gw));
        }
    }
    let delivered_by_load_end = stats.hec_events.load(Ordering::Relaxed) - before.hec_events;
    let report = rt.block_on(load).unwrap().expect("the load ran");
    let want_hec = before.hec_events + report.accepted;
    let want_bulk = before.bulk_events + if args.all_sinks { report.accepted } else { 0 };
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.hec_events.load(Ordering::Relaxed) < want_hec
        || stats.bulk_events.load(Ordering::Relaxed) < want_bulk
    {
        assert!(
            Instant::now() < deadline,
            "delivery did not catch up within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = snapshot(gw, stats);
    let (rss, peak) = gw.rss_mib();
    let hec_limit = hec_limit_of(gw);
    let per_million = |cpu: f64| cpu / report.accepted.max(1) as f64 * 1e6;
    Run {
        label: label.into(),
        accepted: report.accepted,
        retried: report.retried_requests,
        rejected: report.rejected,
        seconds: (after.at - before.at).as_secs_f64(),
        in_mb: report.accepted_bytes as f64 / 1e6,
        out_mb: (after.wire_bytes - before.wire_bytes) as f64 / 1e6,
        p50_ms: histogram_quantile(0.5, &after.delivery, &before.delivery).map(|s| s * 1000.0),
        p99_ms: histogram_quantile(0.99, &after.delivery, &before.delivery).map(|s| s * 1000.0),
        request_p99_ms: report.latency_p99_us.map(|u| f64::from(u) / 1000.0),
        gateway_cpu_per_million: per_million(after.gateway_cpu - before.gateway_cpu),
        load_cpu_per_million: per_million(after.load_cpu - before.load_cpu),
        rss_mib: rss,
        peak_rss_mib: peak,
        hec_limit,
        hec_limits,
        delivered_during_load: delivered_by_load_end as f64 / report.accepted.max(1) as f64,
    }
}

/// The HEC sink's concurrency limit now.
fn hec_limit_of(gw: &Gateway) -> Option<f64> {
    gw.metrics()
        .lines()
        .find(|l| l.starts_with("thoth_sink_concurrency_limit{sink=\"splunk\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::Builder::new()
        .prefix("thoth-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    eprintln!(
        "pipeline bench: writing a {}-endpoint Jamf snapshot",
        args.endpoints
    );
    {
        let file = std::fs::File::create(dir.path().join("acme-jamf.json")).unwrap();
        let mut w = std::io::BufWriter::new(file);
        thoth_load::snapshot::write_jamf("acme", args.endpoints, &mut w).unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let receiver_options = ReceiverOptions {
        hec_token: Some(HEC_TOKEN.into()),
        two_sends: args.two_sends,
        ..Default::default()
    };
    let (receiver, stats) = rt
        .block_on(receive::start(
            "127.0.0.1:0".parse().unwrap(),
            receiver_options,
        ))
        .unwrap();
    // A sink that is down points at a closed port first.
    let hec_url = match args.sink_down {
        Some(_) => "http://127.0.0.1:9".to_string(),
        None => format!("http://{receiver}"),
    };
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config(dir.path(), &receiver.to_string(), args.all_sinks, &hec_url),
    )
    .unwrap();
    // From the start of the process: the MDM snapshot loads before the port opens.
    let started = Instant::now();
    let gw = Gateway::start(&cfg);
    while gw.get("/ready").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the MDM snapshot did not load"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rss, _) = gw.rss_mib();
    eprintln!(
        "pipeline bench: gateway ready in {:.1} s with {} endpoints, RSS {rss:.0} MiB; sinks: {}",
        started.elapsed().as_secs_f64(),
        args.endpoints,
        if args.all_sinks {
            "splunk_hec + elasticsearch + file"
        } else {
            "splunk_hec"
        },
    );

    if let Some(down) = args.sink_down {
        sink_down(&rt, &gw, &args, down);
        return;
    }

    let mut runs = vec![phase(&rt, &gw, &stats, &args, "max", None)];
    runs[0].print();
    if args.fixed_rates {
        let max = runs[0].rate();
        for percent in [25, 50, 75] {
            let run = phase(
                &rt,
                &gw,
                &stats,
                &args,
                &format!("{percent}% of max"),
                Some(max * f64::from(percent) / 100.0),
            );
            run.print();
            runs.push(run);
        }
    }
    let summary = serde_json::json!({
        "endpoints": args.endpoints,
        "sinks": if args.all_sinks { "splunk_hec+elasticsearch+file" } else { "splunk_hec" },
        "connections": args.connections,
        "batch": args.batch,
        "seconds": args.seconds,
        "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
    });
    println!("{summary}");
}

/// Load at a steady rate while the HEC sink is unreachable, sampling RSS every 10 s: the
/// backlog belongs on disk, so RSS should stay flat.
fn sink_down(rt: &tokio::runtime::Runtime, gw: &Gateway, args: &Args, seconds: u64) {
    let options = load(
        gw,
        args,
        Some(args.down_rate),
        Duration::from_secs(seconds),
        false,
    );
    let load = rt.spawn(send::run(options));
    let start = Instant::now();
    let mut samples = Vec::new();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_secs(10));
        let (rss, _) = gw.rss_mib();
        let queued = gw
            .get("/v1/health")
            .1
            .parse::<serde_json::Value>()
            .ok()
            .and_then(|h| h["sinks"]["splunk"]["queued_events"].as_u64())
            .unwrap_or(0);
        eprintln!(
            "sink down {:>4.0} s: RSS {rss:.0} MiB, queued {queued}",
            start.elapsed().as_secs_f64()
        );
        samples.push(
            serde_json::json!({"t_s": start.elapsed().as_secs(), "rss_mib": rss, "queued": queued}),
        );
    }
    let report = rt.block_on(load).unwrap().unwrap();
    println!(
        "{}",
        serde_json::json!({"sink_down_seconds": seconds, "accepted": report.accepted, "samples": samples})
    );
}
