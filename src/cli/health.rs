//! `thoth-gateway health`: asks a running gateway for `/v1/health`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches `/v1/health` over plain HTTP/1.1 and returns (HTTP status, body).
fn fetch(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        bail!("{url}: give the gateway's base URL, e.g. http://127.0.0.1:8686");
    }
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {hostport}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /v1/health HTTP/1.1\r\nHost: {hostport}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        // `get`: a size that cuts a character (any server can answer) ends the body.
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.trim_start_matches("\r\n");
    }
    out
}

/// Returns the exit code: 0 when `ok`, 1 when degraded, failing or unreachable.
pub fn run(url: &str, json: bool) -> i32 {
    match fetch(url) {
        Ok((200, body)) => {
            let status = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            if json {
                println!("{}", body.trim());
            } else {
                println!("{url}: {status}");
            }
            i32::from(status != "ok")
        }
        Ok((code, body)) => {
            report_error(json, url, &format!("HTTP {code}: {}", body.trim()));
            1
        }
        Err(e) => {
            report_error(json, url, &format!("{e:#}"));
            1
        }
    }
}

fn report_error(json: bool, url: &str, message: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({"status": "unreachable", "url": url, "error": message})
        );
    } else {
        println!("{url}: unreachable: {message}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_decode_and_hostile_sizes_end_them() {
        assert_eq!(
            super::dechunk("4\r\n{\"a\"\r\n2\r\n:1\r\n0\r\n\r\n"),
            "{\"a\":1"
        );
        // A size that cuts a multi-byte character, or runs past the end: the body ends there.
        assert_eq!(super::dechunk("1\r\né\r\n0\r\n\r\n"), "");
        assert_eq!(super::dechunk("ff\r\nshort"), "");
        assert_eq!(super::dechunk("zz\r\n"), "");
    }
}
