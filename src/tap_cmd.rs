//! `thoth-gateway tap`: prints a running gateway's `/v1/tap` stream (like `vector tap`).
//! The admin token comes from `--token-file` or `THOTH_ADMIN_TOKEN`, never the command line
//! (which other users of the machine can read).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// What to watch.
pub struct TapArgs {
    pub url: String,
    pub stage: String,
    pub tenant: Option<String>,
    pub rate: Option<u32>,
    /// Stop after this many events.
    pub count: Option<u64>,
    pub token_file: Option<PathBuf>,
}

pub fn run(args: TapArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
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
