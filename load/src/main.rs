//! `thoth-load`: drive thoth-gateway (or any HTTP NDJSON forwarder) with realistic Thoth
//! events, generate a matching MDM snapshot, or run fast HEC / `_bulk` receivers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use thoth_load::generate::{RiskMix, Workload};
use thoth_load::receive::{self, ReceiverOptions};
use thoth_load::send::{self, SendOptions, TenantToken};

#[derive(Parser)]
#[command(name = "thoth-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post NDJSON batches of decisions and check-ins; prints sent / accepted / rejected / rate.
    Send(SendArgs),
    /// Write a Jamf Pro computers-inventory (or Intune managedDevices) snapshot of the
    /// endpoints `send` uses.
    Snapshot {
        #[arg(long, default_value = "acme")]
        tenant: String,
        /// `jamf` or `intune`.
        #[arg(long, default_value = "jamf", value_parser = ["jamf", "intune"])]
        format: String,
        #[arg(long, default_value_t = 100_000)]
        endpoints: u32,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Write NDJSON batches to files, and a `TOKEN FILE` manifest, for an outside load
    /// generator (`wrk -s benches/wrk/post_batches.lua`).
    Bodies {
        /// Directory to write into (created).
        #[arg(long)]
        out_dir: std::path::PathBuf,
        /// How many batch files.
        #[arg(long, default_value_t = 64)]
        files: usize,
        /// TENANT=TOKEN, repeatable; files rotate over them (default: the demo tenants).
        #[arg(long = "tenant", value_name = "TENANT=TOKEN")]
        tenants: Vec<String>,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Serve fast Splunk HEC and Elasticsearch `_bulk` receivers on one port.
    Receive {
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        /// Require `Authorization: Splunk <token>` on HEC requests.
        #[arg(long)]
        hec_token: Option<String>,
        /// Print the counters every second.
        #[arg(long)]
        progress: bool,
        /// Write every response in two sends with Nagle on (round trips of ~1 ms and ~41 ms
        /// as the client's delayed ACK meets them), to test a sender's adaptive concurrency.
        #[arg(long)]
        two_sends: bool,
    },
}

/// What the generated events look like (`send` and `bodies`).
#[derive(clap::Args)]
struct WorkloadArgs {
    /// Events per request (per file for `bodies`).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Endpoints per tenant (match `snapshot --endpoints`).
    #[arg(long, default_value_t = 3)]
    endpoints: u32,
    /// Percent of events that are check-ins.
    #[arg(long, default_value_t = 5)]
    checkin_percent: u32,
    /// Risk weights, e.g. low=70,medium=20,high=8,critical=2.
    #[arg(long, default_value = "low=70,medium=20,high=8,critical=2")]
    risk_mix: RiskMix,
}

impl WorkloadArgs {
    fn workload(self) -> Workload {
        Workload {
            endpoints: self.endpoints,
            checkin_percent: self.checkin_percent,
            risk_mix: self.risk_mix,
            batch: self.batch,
        }
    }
}

#[derive(clap::Args)]
struct SendArgs {
    /// The ingest endpoint (http only).
    #[arg(long, default_value = "http://127.0.0.1:8686/v1/events")]
    target: String,
    /// TENANT=TOKEN, repeatable; batches rotate over them. Defaults to the built-in config's
    /// demo tenants.
    #[arg(long = "tenant", value_name = "TENANT=TOKEN")]
    tenants: Vec<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Events per second over all connections, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
    /// How long to send, e.g. 30s, 2m.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop after this many accepted events instead (rounded up to whole batches).
    #[arg(long)]
    events: Option<u64>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Send `Content-Encoding: gzip` bodies.
    #[arg(long)]
    gzip: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Durations as the gateway's config writes them (`30s`, `2m`, `1h30m`).
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    thoth_config::units::parse_duration(s).map_err(|e| anyhow::anyhow!("--duration: {e}"))
}

/// `TENANT=TOKEN` arguments; the built-in config's demo tenants when there are none.
fn tenant_tokens(args: &[String]) -> anyhow::Result<Vec<TenantToken>> {
    Ok(if args.is_empty() {
        vec![
            TenantToken {
                tenant: "acme".into(),
                token: "acme-demo-token".into(),
            },
            TenantToken {
                tenant: "globex".into(),
                token: "globex-demo-token".into(),
            },
        ]
    } else {
        args.iter()
            .map(|t| {
                let (tenant, token) = t
                    .split_once('=')
                    .with_context(|| format!("--tenant `{t}`: expected TENANT=TOKEN"))?;
                Ok(TenantToken {
                    tenant: tenant.into(),
                    token: token.into(),
                })
            })
            .collect::<anyhow::Result<_>>()?
    })
}

fn send_options(a: SendArgs) -> anyhow::Result<(SendOptions, bool)> {
    let tenants = tenant_tokens(&a.tenants)?;
    let rate = match a.rate.as_str() {
        "max" => None,
        r => Some(
            r.parse::<f64>()
                .with_context(|| format!("--rate `{r}`: events per second or `max`"))?,
        ),
    };
    let options = SendOptions {
        target: a
            .target
            .parse()
            .with_context(|| format!("--target `{}` is not a URL", a.target))?,
        tenants,
        connections: a.connections,
        rate,
        duration: if a.events.is_some() {
            None
        } else {
            Some(parse_duration(&a.duration)?)
        },
        max_events: a.events,
        gzip: a.gzip,
        workload: a.workload.workload(),
        progress: !a.quiet,
    };
    Ok((options, a.json))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Send(args) => {
            let (options, json) = send_options(args)?;
            let report = runtime.block_on(send::run(options))?;
            if json {
                println!("{}", report.to_json());
            } else {
                let j = report.to_json();
                println!(
                    "sent {}  accepted {}  rejected {}  retried requests {}  transport errors {}\n\
                     {:.0} events/s  {:.1} MB/s  request p50 {} ms  p99 {} ms",
                    report.sent,
                    report.accepted,
                    report.rejected,
                    report.retried_requests,
                    report.transport_errors,
                    report.events_per_second(),
                    j["mb_per_second"].as_f64().unwrap_or(0.0),
                    j["latency_p50_ms"],
                    j["latency_p99_ms"],
                );
            }
            if let Some(why) = report.first_rejection {
                eprintln!("thoth-load: first rejection: {why}");
            }
            if report.accepted == 0 {
                anyhow::bail!("nothing was accepted");
            }
        }
        Command::Snapshot { tenant, format, endpoints, out } => {
            let write = if format == "intune" {
                thoth_load::snapshot::write_intune
            } else {
                thoth_load::snapshot::write_jamf
            };
            if out == "-" {
                let stdout = std::io::stdout();
                write(&tenant, endpoints, &mut std::io::BufWriter::new(stdout.lock()))?;
            } else {
                let file = std::fs::File::create(&out).with_context(|| format!("cannot create {out}"))?;
                let mut w = std::io::BufWriter::new(file);
                write(&tenant, endpoints, &mut w)?;
                std::io::Write::flush(&mut w)?;
                eprintln!("thoth-load: wrote {endpoints} endpoints of {tenant} to {out}");
            }
        }
        Command::Bodies { out_dir, files, tenants, workload } => {
            let tenants = tenant_tokens(&tenants)?;
            let workload = workload.workload();
            let batch = workload.batch;
            let bytes = thoth_load::bodies::write_bodies(&out_dir, files, &tenants, &workload, &thoth_event::now_rfc3339())
                .with_context(|| format!("cannot write the bodies into {}", out_dir.display()))?;
            eprintln!("thoth-load: wrote {files} batches of {batch} events ({bytes} bytes) and manifest.txt to {}", out_dir.display());
        }
        Command::Receive { listen, hec_token, progress, two_sends } => runtime.block_on(async {
            let options = ReceiverOptions { hec_token, two_sends, ..ReceiverOptions::default() };
            let (addr, stats) = receive::start(listen, options).await?;
            eprintln!("thoth-load: receiving on http://{addr} (HEC /services/collector/event, /_bulk, GET /stats)");
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => if progress { eprintln!("{}", stats.to_json()) },
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            anyhow::Ok(())
        })?,
    }
    Ok(())
}
