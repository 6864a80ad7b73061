//! `thoth-gateway tap`: prints a running gateway's `/v1/tap` stream (like `vector tap`).
//! The admin token comes from `--token-file` or `THOTH_ADMIN_TOKEN`, never the command line
//! (which other users of the machine can read).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// What to watch.
#[derive(clap::Args)]
pub struct TapArgs {
    #[arg(long, default_value = "http://127.0.0.1:8686")]
    pub url: String,
    /// `ingest`, `enriched` or `sink:NAME`.
    #[arg(long, default_value = "enriched")]
    pub stage: String,
    /// Only this tenant's events.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Events per second at most (the gateway's default 100, at most 1000).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// File holding the admin token (else THOTH_ADMIN_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

pub fn run(args: TapArgs) -> i32 {
    let runtime = match crate::cli::command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(stream(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("thoth-gateway tap: {e:#}");
            1
        }
    }
}

fn token(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin token from {}", path.display()))?,
        None => std::env::var("THOTH_ADMIN_TOKEN")
            .context("give the admin token with --token-file or THOTH_ADMIN_TOKEN")?,
    };
    Ok(token.trim().to_string())
}

async fn stream(args: TapArgs) -> anyhow::Result<()> {
    let token = token(args.token_file.as_ref())?;
    let mut url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("{}: not a URL", args.url))?
        .join("/v1/tap")?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("stage", &args.stage);
        if let Some(t) = &args.tenant {
            q.append_pair("tenant", t);
        }
        if let Some(r) = args.rate {
            q.append_pair("rate", &r.to_string());
        }
    }
    let mut resp = reqwest::Client::new()
        .get(url.clone())
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{url}: HTTP {status}: {}", body.trim());
    }
    eprintln!("tapping {} at {} (Ctrl-C to stop)", args.stage, args.url);
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    let mut partial = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        partial.extend_from_slice(&chunk);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            out.write_all(&line)?;
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
    }
    Ok(())
}
