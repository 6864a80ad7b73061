//! `thoth-gateway`: the SIEM forwarding gateway of the Thoth AI-governance platform.
//! This binary parses the command line and wires the stages (crates) together.

mod api;
mod canary;
mod default_config;
mod dlq_cmd;
mod health_cmd;
mod ingest_replay;
mod mdm_cmd;
mod pipeline;
mod programs;
mod reload;
mod run;
mod sink_set;
mod stale;
mod supervise;
mod tap_cmd;
mod test_cmd;
mod test_webhook;
mod validate;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use thoth_config::Config;

#[derive(Parser)]
#[command(
    name = "thoth-gateway",
    version,
    about = "Thoth SIEM forwarding gateway"
)]
struct Cli {
    /// Log format on stderr: `human` (default) or `json` (one object per line, for log
    /// shippers). The level comes from THOTH_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (without --config: the built-in default, see README).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file; report every error with its key path.
    Validate {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask a running gateway for /v1/health (exit 1 unless ok).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8686")]
        url: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the config's [[tests]] (VRL and routing unit tests).
    Test {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Send one signed webhook_test event to a sink now (bypassing the buffer).
    TestWebhook {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sink: String,
        #[arg(long)]
        json: bool,
    },
    /// MDM operations.
    Mdm {
        #[command(subcommand)]
        action: MdmAction,
    },
    /// The deployment checklist: config valid, a canary through every sink, MDM providers
    /// reachable with counts, check-in health (exit 1 if any item fails).
    Verify {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print live events of a running gateway at a stage (sampled; like `vector tap`).
    Tap(tap_cmd::TapArgs),
    /// A sink's dead letters: list, replay (send again) or purge.
    Dlq {
        action: dlq_cmd::DlqAction,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sink: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MdmAction {
    /// Sync the MDM API providers now and print the counts.
    Sync {
        #[arg(long)]
        config: PathBuf,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("THOTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Span fields (`sink`, `source`) are flattened into each line so a log query can filter
        // on them directly.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

// See Cargo.toml: measured faster than glibc's allocator on the hot path, and it returns
// memory freed after an MDM snapshot load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands memory this thread freed back to the system now. An MDM load frees about as much as
/// the index it builds, and mimalloc purges a thread's free pages only when that thread
/// allocates again: at 100 000 endpoints, 60 MiB stayed resident (BENCHMARKS.md).
pub(crate) fn release_freed_memory() {
    // SAFETY: mi_collect only walks and purges the calling thread's heap and abandoned
    // segments; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Keeps the kernel from backing this process's heap with transparent huge pages. mimalloc
/// asks for them on its arenas, and a 2 MiB page stays resident while any 4 KiB of it is in
/// use: under load that held about 20 MiB more at the peak (BENCHMARKS.md), for no measured
/// gain in speed. Called first, before the heap grows; harmless where THP is off.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config } => run_command(config, cli.log_format),
        Command::Validate { config, json } => validate::run(&config, json),
        Command::Health { url, json } => health_cmd::run(&url, json),
        Command::Dlq {
            action,
            config,
            sink,
            json,
        } => dlq_cmd::run(action, &config, &sink, json),
        Command::TestWebhook { config, sink, json } => test_webhook::run(&config, &sink, json),
        Command::Test { config, json } => test_cmd::run(&config, json),
        Command::Mdm {
            action:
                MdmAction::Sync {
                    config,
                    provider,
                    json,
                },
        } => mdm_cmd::sync(&config, provider.as_deref(), json),
        Command::Verify { config, json } => verify::run(&config, json),
        Command::Tap(args) => tap_cmd::run(args),
    };
    ExitCode::from(code as u8)
}

/// A single-threaded runtime for a one-shot command; `Err(1)` (reported) if it cannot start.
fn command_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            1
        })
}

fn run_command(config_path: Option<PathBuf>, log_format: LogFormat) -> i32 {
    init_logging(log_format);
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                eprintln!("{}: invalid config", path.display());
                for e in errors {
                    eprintln!("  {e}");
                }
                return 2;
            }
        },
        None => {
            match default_config::load() {
                Ok(c) => {
                    tracing::info!("no --config given: running the built-in default (demo tokens, loopback only)");
                    c
                }
                Err(e) => {
                    eprintln!("thoth-gateway: {e:#}");
                    return 1;
                }
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("thoth-gateway: cannot start the runtime: {e}");
            return 1;
        }
    };
    let programs = match programs::Programs::compile(&config) {
        Ok(p) => p,
        Err(diagnostics) => {
            eprintln!("invalid VRL in the config:");
            for d in diagnostics {
                eprintln!("  {d}\n{}", d.rendered);
            }
            return 2;
        }
    };
    for w in &config.warnings {
        tracing::warn!(key = %w.path, "config: {}", w.message);
    }
    for w in &programs.warnings {
        tracing::warn!("{w}");
    }
    match runtime.block_on(run::run(config, programs, config_path)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("thoth-gateway: {e:#}");
            1
        }
    }
}
