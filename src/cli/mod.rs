//! The command line: one module per command, named after it. Every command that reads a
//! config loads it with [`load_config_or_exit`]; one-shot commands run on
//! [`command_runtime`].

pub mod canary;
pub mod config_schema;
pub mod dlq;
pub mod health;
pub mod manual;
pub mod mdm;
pub mod run;
pub mod tap;
pub mod test;
pub mod test_webhook;
pub mod validate;
pub mod verify;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use thoth_config::Config;

/// The version and the git commit it was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("THOTH_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "thoth-gateway",
    version = VERSION,
    about = "Thoth SIEM forwarding gateway"
)]
pub struct Cli {
    /// Log format on stderr: `human` (default) or `json` (one object per line, for log
    /// shippers). The level comes from THOTH_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (without --config: the built-in default, see README).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file; report every error with its key path.
    Validate(ConfigArgs),
    /// Ask a running gateway for /v1/health (exit 1 unless ok).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8686")]
        url: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the config's [[tests]] (VRL and routing unit tests).
    Test(ConfigArgs),
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
    Verify(ConfigArgs),
    /// Print live events of a running gateway at a stage (sampled; like `vector tap`).
    Tap(tap::TapArgs),
    /// A sink's dead letters: list, replay (send again) or purge.
    Dlq {
        action: dlq::DlqAction,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sink: String,
        #[arg(long)]
        json: bool,
    },
    /// Config tooling: `config schema` prints the JSON Schema of the config file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) on stdout: `thoth-gateway man > thoth-gateway.1`.
    Man,
}

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print the JSON Schema (2020-12) of the config file, for editors and CI linters.
    Schema,
}

/// The arguments of the commands that check a config file.
#[derive(clap::Args)]
pub struct ConfigArgs {
    #[arg(long)]
    config: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum MdmAction {
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

/// Runs the command line's command; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let code = match cli.command {
        Command::Run { config } => run::run(config, cli.log_format),
        Command::Validate(a) => validate::run(&a.config, a.json),
        Command::Health { url, json } => health::run(&url, json),
        Command::Dlq {
            action,
            config,
            sink,
            json,
        } => dlq::run(action, &config, &sink, json),
        Command::TestWebhook { config, sink, json } => test_webhook::run(&config, &sink, json),
        Command::Test(a) => test::run(&a.config, a.json),
        Command::Mdm {
            action:
                MdmAction::Sync {
                    config,
                    provider,
                    json,
                },
        } => mdm::sync(&config, provider.as_deref(), json),
        Command::Verify(a) => verify::run(&a.config, a.json),
        Command::Tap(args) => tap::run(args),
        Command::Config {
            action: ConfigAction::Schema,
        } => config_schema::run(),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man => manual::man_page(),
    };
    code
}

/// The config at `path`, or exit code 2 after printing every error with its key path.
pub fn load_config_or_exit(path: &Path) -> Result<Config, i32> {
    Config::load(path).map_err(|errors| {
        eprintln!("{}: invalid config", path.display());
        for e in errors {
            eprintln!("  {e}");
        }
        2
    })
}

/// A single-threaded runtime for a one-shot command; `Err(1)` (reported) if it cannot start.
pub fn command_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            1
        })
}

pub fn init_logging(format: LogFormat) {
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
