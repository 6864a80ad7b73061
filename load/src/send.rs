//! Sending batches: N keep-alive HTTP/1.1 connections, each posting NDJSON batches at its share
//! of a fixed rate or as fast as its answers come back; 429 and 503 are retried (after
//! `Retry-After`, capped) with the same body, as a Thoth proxy does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

use crate::generate::{BatchTemplate, Rng, Workload};
use crate::summary::percentile;

/// Templates per worker: enough variety in endpoints and risks, little memory.
const TEMPLATES_PER_WORKER: usize = 16;
/// The longest `Retry-After` honoured; a benchmark should not stall on one long answer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A tenant and the ingest token its batches are posted with (a batch holds one tenant).
#[derive(Debug, Clone)]
pub struct TenantToken {
    pub tenant: String,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct SendOptions {
    /// `http://host:port/path` of an NDJSON ingest endpoint.
    pub target: Uri,
    pub tenants: Vec<TenantToken>,
    pub connections: usize,
    /// Events per second over all connections; `None` is as fast as possible.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    /// Stop after this many events were accepted (rounded up to whole batches).
    pub max_events: Option<u64>,
    pub gzip: bool,
    pub workload: Workload,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl SendOptions {
    /// One tenant's load to `target`: 4 connections as fast as possible, the default workload,
    /// until the caller's `duration` or `max_events` (set one), no progress lines.
    pub fn to(target: Uri, tenant: &str, token: &str) -> Self {
        SendOptions {
            target,
            tenants: vec![TenantToken {
                tenant: tenant.into(),
                token: token.into(),
            }],
            connections: 4,
            rate: None,
            duration: None,
            max_events: None,
            gzip: false,
            workload: Workload::default(),
            progress: false,
        }
    }
}

/// What a run did. `sent` counts events in first attempts; retries are counted separately.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub retried_requests: u64,
    pub transport_errors: u64,
    /// Uncompressed NDJSON bytes of accepted batches.
    pub accepted_bytes: u64,
    pub elapsed: Duration,
    /// Request round trips of accepted batches, microseconds.
    pub latency_p50_us: Option<u32>,
    pub latency_p99_us: Option<u32>,
    /// The first rejection's status and body, to say why.
    pub first_rejection: Option<String>,
}

impl Report {
    pub fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "retried_requests": self.retried_requests,
            "transport_errors": self.transport_errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "events_per_second": self.events_per_second(),
            "mb_per_second": self.accepted_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9),
            "latency_p50_ms": self.latency_p50_us.map(|u| f64::from(u) / 1000.0),
            "latency_p99_ms": self.latency_p99_us.map(|u| f64::from(u) / 1000.0),
            "first_rejection": self.first_rejection,
        })
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    errors: AtomicU64,
    accepted_bytes: AtomicU64,
    /// Events claimed by workers against `max_events`.
    claimed: AtomicU64,
    first_rejection: Mutex<Option<String>>,
}

/// Runs the load until the duration passes or `max_events` are accepted.
pub async fn run(opts: SendOptions) -> anyhow::Result<Report> {
    if opts.tenants.is_empty() {
        bail!("at least one tenant and token is needed");
    }
    if opts.connections == 0 || opts.workload.batch == 0 {
        bail!("connections and batch size must be at least 1");
    }
    if opts.target.scheme_str() != Some("http") {
        bail!("the target must be an http:// URL (the generator measures the forwarder, not TLS)");
    }
    let opts = Arc::new(opts);
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // The events' `time`: the run's start, as the Thoth proxy writes it.
    let time = thoth_event::now_rfc3339();

    let mut workers = Vec::new();
    for worker in 0..opts.connections {
        let (opts, counters, stop) = (opts.clone(), counters.clone(), stop.clone());
        let time = time.clone();
        workers.push(tokio::spawn(async move {
            send_loop(worker, &opts, &counters, &stop, start, &time).await
        }));
    }
    let progress = opts.progress.then(|| {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let accepted = counters.accepted.load(Ordering::Relaxed);
                eprintln!(
                    "thoth-load: {:>5.0}s  sent {}  accepted {}  rejected {}  retried {}  {:.1} k events/s",
                    start.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    accepted,
                    counters.rejected.load(Ordering::Relaxed),
                    counters.retried.load(Ordering::Relaxed),
                    (accepted - last) as f64 / 1000.0,
                );
                last = accepted;
            }
        })
    });
    if let Some(d) = opts.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.context("a sender task failed")??);
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
    }
    latencies.sort_unstable();
    let first_rejection = counters.first_rejection.lock().unwrap().clone();
    Ok(Report {
        sent: counters.sent.load(Ordering::Relaxed),
        accepted: counters.accepted.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        retried_requests: counters.retried.load(Ordering::Relaxed),
        transport_errors: counters.errors.load(Ordering::Relaxed),
        accepted_bytes: counters.accepted_bytes.load(Ordering::Relaxed),
        elapsed,
        latency_p50_us: percentile(&latencies, 0.5),
        latency_p99_us: percentile(&latencies, 0.99),
        first_rejection,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Uri) -> anyhow::Result<Sender> {
    let host = target.host().context("the target has no host")?;
    let port = target.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One connection's loop; returns its accepted requests' round trips in microseconds.
async fn send_loop(
    worker: usize,
    opts: &SendOptions,
    counters: &Counters,
    stop: &AtomicBool,
    start: Instant,
    time: &str,
) -> anyhow::Result<Vec<u32>> {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ ((worker as u64 + 1) * 0x1000_0001));
    let templates: Vec<(usize, BatchTemplate)> = (0..TEMPLATES_PER_WORKER)
        .map(|i| {
            let t = (worker + i) % opts.tenants.len();
            let tenant = &opts.tenants[t].tenant;
            (
                t,
                BatchTemplate::build(&opts.workload, tenant, worker as u16, time, &mut rng),
            )
        })
        .collect();
    let batch = opts.workload.batch as u64;
    // Each connection sends one batch every `period` to make up its share of the rate.
    let period = opts
        .rate
        .map(|r| Duration::from_secs_f64(batch as f64 * opts.connections as f64 / r.max(1e-3)));
    // Stagger the connections over one period so requests do not arrive in lockstep.
    let offset = period.map_or(Duration::ZERO, |p| {
        p.mul_f64(worker as f64 / opts.connections as f64)
    });
    let host = opts
        .target
        .authority()
        .map_or("localhost".into(), |a| a.to_string());
    let mut sender = connect(&opts.target).await?;
    let mut latencies = Vec::new();
    let mut body = Vec::new();
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(max) = opts.max_events {
            if counters.claimed.fetch_add(batch, Ordering::Relaxed) >= max {
                break;
            }
        }
        if let Some(p) = period {
            tokio::time::sleep_until((start + offset + p.mul_f64(n as f64)).into()).await;
        }
        let (tenant, template) = &templates[n as usize % templates.len()];
        template.stamp(n * batch, &mut body);
        let raw_len = body.len() as u64;
        let payload = if opts.gzip {
            Bytes::from(gzip(&body))
        } else {
            Bytes::copy_from_slice(&body)
        };
        counters.sent.fetch_add(batch, Ordering::Relaxed);
        loop {
            let mut request = Request::post(opts.target.clone())
                .header(HOST, host.as_str())
                .header(CONTENT_TYPE, "application/x-ndjson")
                .header(
                    AUTHORIZATION,
                    format!("Bearer {}", opts.tenants[*tenant].token),
                );
            if opts.gzip {
                request = request.header(CONTENT_ENCODING, "gzip");
            }
            let request = request.body(Full::new(payload.clone()))?;
            let began = Instant::now();
            let answer = match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(e) => Err(e),
            };
            let response = match answer {
                Ok(r) => r,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return Ok(latencies);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok(s) = connect(&opts.target).await {
                        sender = s;
                    }
                    continue;
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok());
            let text = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                latencies.push(began.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                counters.accepted.fetch_add(batch, Ordering::Relaxed);
                counters
                    .accepted_bytes
                    .fetch_add(raw_len, Ordering::Relaxed);
                break;
            }
            if status.as_u16() == 429 || status.as_u16() == 503 {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                let wait = retry_after.map_or(Duration::from_millis(100), Duration::from_secs_f64);
                tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                if stop.load(Ordering::Relaxed) {
                    return Ok(latencies);
                }
                continue;
            }
            counters.rejected.fetch_add(batch, Ordering::Relaxed);
            let mut first = counters.first_rejection.lock().unwrap();
            if first.is_none() {
                *first = Some(format!("{status} {}", String::from_utf8_lossy(&text)));
            }
            break;
        }
    }
    Ok(latencies)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}
