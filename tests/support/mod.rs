//! Runs the real `thoth-gateway` binary for end-to-end tests: a config in a temp dir, port 0,
//! stderr collected (the listening address is read from it), SIGKILL or SIGTERM on demand.
#![allow(dead_code)]

pub mod ecs;
pub mod elastic;
pub mod hec;
pub mod mdm;
pub mod receiver;
pub mod redis;
pub mod schemas;
pub mod sentinel;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_thoth-gateway");

/// How long any wait for the gateway may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository's example MDM snapshots.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/mdm")
        .join(name)
}

/// A config for tests: tenants acme (Jamf snapshot) and globex (Intune snapshot), a token per
/// tenant and an admin token, one file sink `out`. `extra` is appended (more sections).
pub fn config_text(dir: &Path, wal: &str, sink_extra: &str, extra: &str) -> String {
    let acme = dir.join("acme-jamf.json");
    let globex = dir.join("globex-intune.json");
    if !acme.exists() {
        std::fs::copy(example("acme-jamf.json"), &acme).unwrap();
        std::fs::copy(example("globex-intune.json"), &globex).unwrap();
    }
    format!(
        r#"
data_dir = "{data}"

[api]
listen = "127.0.0.1:0"
max_body_bytes = "64KiB"
[[api.tokens]]
tenant_id = "acme"
token = "acme-token"
[[api.tokens]]
tenant_id = "globex"
token = "globex-token"
[[api.tokens]]
admin = true
token = "admin-token"

[wal]
{wal}

[[tenants]]
id = "acme"
name = "Acme Corp"
compliance_profile = "soc2"
[[tenants]]
id = "globex"
name = "Globex Inc"

[[mdm.providers]]
name = "acme-jamf"
tenant_id = "acme"
kind = "jamf"
file = "{acme}"
endpoint_id_attribute = "Thoth Endpoint ID"
[[mdm.providers]]
name = "globex-intune"
tenant_id = "globex"
kind = "intune"
file = "{globex}"

[[mdm.fleet_rules]]
tenant_id = "acme"
when = {{ department = "Engineering", os = "macOS" }}
fleet = {{ id = "eng-macs", name = "Engineering Macs" }}
[[mdm.fleet_rules]]
tenant_id = "globex"
when = {{ os = "Windows" }}
fleet = {{ id = "globex-windows", name = "Globex Windows" }}

[sinks.out]
type = "file"
path = "{out}"
{sink_extra}

{extra}
"#,
        data = dir.join("data").display(),
        acme = acme.display(),
        globex = globex.display(),
        out = out_path(dir).display(),
    )
}

pub fn out_path(dir: &Path) -> PathBuf {
    dir.join("out").join("events.ndjson")
}

/// A running gateway.
pub struct Gateway {
    child: Child,
    pub addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the binary with `config` and waits until it listens.
    pub fn start(config: &Path) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(config);
        Gateway::spawn(cmd).unwrap_or_else(|logs| panic!("the gateway did not start:\n{logs}"))
    }

    /// Starts the binary with `config` and more arguments (e.g. `--log-format json`).
    pub fn start_with_args(config: &Path, args: &[&str]) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["run", "--config"]).arg(config);
        Gateway::spawn(cmd).unwrap_or_else(|logs| panic!("the gateway did not start:\n{logs}"))
    }

    /// Starts a prepared command (e.g. the binary inside `unshare`, or with `LD_PRELOAD`)
    /// and waits until it listens.
    pub fn start_command(cmd: Command) -> Gateway {
        Gateway::spawn(cmd).unwrap_or_else(|logs| panic!("the gateway did not start:\n{logs}"))
    }

    /// Starts `run` without a config (the built-in default) in `cwd`; `Err(logs)` when it
    /// exits instead of listening.
    pub fn start_default(cwd: &Path) -> Result<Gateway, String> {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").current_dir(cwd);
        Gateway::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Result<Gateway, String> {
        let mut child = cmd
            .env("THOTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting thoth-gateway");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Human (`listening on ADDR`) or JSON (`"message":"listening on ADDR"`) logs.
                let addr: Option<String> = line.split("listening on ").nth(1).map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                        .collect()
                });
                // Stored before the start is signalled, so `logs()` always holds the line.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(Some(addr));
                }
            }
            let _ = tx.send(None); // stderr closed: the process ended
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Some(addr)) => Ok(Gateway {
                child,
                addr,
                stderr: lines,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let logs = lines.lock().unwrap().join("\n");
                Err(logs)
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, signal: &str) {
        unsafe_kill(self.child.id(), signal);
    }

    /// SIGKILL: no chance to flush or persist anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// The `/v1/health` report.
    pub fn health(&self) -> serde_json::Value {
        client()
            .get(self.url("/v1/health"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success());
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs an NDJSON body with a token; returns (status, body as JSON or Null).
pub fn post_ndjson(
    client: &reqwest::blocking::Client,
    gw: &Gateway,
    token: &str,
    body: String,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let resp = client
        .post(gw.url("/v1/events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().unwrap_or(serde_json::Value::Null);
    (status, body, headers)
}

/// Reads the file sink's output as JSON values (a missing file is empty). A last line without
/// its newline is a write still in progress, not yet output: it is left out. Every event is
/// checked against `docs/schema/enriched.schema.json` (tests whose global transform reshapes
/// events read the file with [`read_ndjson`]).
pub fn read_out(dir: &Path) -> Vec<serde_json::Value> {
    let events = read_ndjson(&out_path(dir));
    for e in &events {
        schemas::assert_enriched_event(e);
    }
    events
}

/// [`read_out`] after the gateway was killed `crashes` times: a write a crash cut short leaves
/// its line torn (the file sink starts the next write on a line of its own and writes those
/// events again whole), at most one per crash. Torn lines are left out; any other line that is
/// not JSON fails the test.
pub fn read_out_after_crashes(dir: &Path, crashes: usize) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out_path(dir)).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut torn = Vec::new();
    let events: Vec<serde_json::Value> = complete
        .lines()
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) if e.is_eof() && l.starts_with('{') => {
                torn.push(l.to_string());
                None
            }
            Err(e) => panic!("bad NDJSON line {l:?}: {e}"),
        })
        .collect();
    assert!(
        torn.len() <= crashes,
        "{} torn lines after {crashes} crash(es): {torn:?}",
        torn.len()
    );
    for e in &events {
        schemas::assert_enriched_event(e);
    }
    events
}

/// Reads complete NDJSON lines of a file that may be being appended to.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// Waits until `check` holds, or fails the test with `what`.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the output holds an event with this `event_id`, and returns all output.
pub fn wait_for_event(dir: &Path, event_id: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    wait_until(&format!("event {event_id} is delivered"), || {
        out = read_out(dir);
        out.iter().any(|e| e["event_id"] == event_id)
    });
    out
}

/// A decision event line.
pub fn decision(id: &str, tenant: &str, endpoint: &str) -> String {
    serde_json::json!({
        "type": "decision", "event_id": id, "tenant_id": tenant, "endpoint_id": endpoint,
        "time": "2026-11-28T10:00:00.120Z", "risk": "high", "decision": "block",
        "surface": "mcp", "action": {"kind": "tool_call", "tool": "github.create_pull_request"}
    })
    .to_string()
}

/// POSTs NDJSON lines as one batch, retrying 503s as a client must.
pub fn post_all(gw: &Gateway, token: &str, lines: &[String]) {
    let c = client();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    loop {
        let (status, resp, _) = post_ndjson(&c, gw, token, body.clone());
        match status {
            200 => return,
            503 => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("unexpected {other}: {resp}"),
        }
    }
}

/// `thoth-gateway ARGS… --json --config CFG`, which must succeed: its JSON report.
pub fn cli_json(cfg: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(args)
        .args(["--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `thoth-gateway dlq ACTION --sink SINK --json`, which must succeed.
pub fn dlq(cfg: &Path, action: &str, sink: &str) -> serde_json::Value {
    cli_json(cfg, &["dlq", action, "--sink", sink])
}
