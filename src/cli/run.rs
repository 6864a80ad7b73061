//! `thoth-gateway run [--config PATH]`: load and check the config (without one, the built-in
//! default), compile its VRL, and run the gateway until it is stopped.

use std::path::PathBuf;

use super::{init_logging, load_config_or_exit, LogFormat};

pub fn run(config_path: Option<PathBuf>, log_format: LogFormat) -> i32 {
    init_logging(log_format);
    let config = match &config_path {
        Some(path) => match load_config_or_exit(path) {
            Ok(c) => c,
            Err(code) => return code,
        },
        None => {
            match crate::default_config::load() {
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
    let programs = match crate::programs::Programs::compile(&config) {
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
    match runtime.block_on(crate::gateway::run(config, programs, config_path)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("thoth-gateway: {e:#}");
            1
        }
    }
}
