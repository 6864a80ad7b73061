//! Realistic Thoth events: proxy decisions (risk mix, decision by risk) and check-ins from
//! endpoints that exist in a generated MDM snapshot ([`crate::snapshot`]).
//!
//! Batches are built once as templates and re-stamped with fresh event ids for every request:
//! stamping is a copy plus a few digits per event, so the generator spends its CPU on sending,
//! not on formatting JSON, and leaves the cores to the forwarder under test.

use std::fmt::Write as _;

/// A small, fast, deterministic generator (xorshift64*); load needs variety, not cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Relative weights of the four risk levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskMix {
    pub low: u32,
    pub medium: u32,
    pub high: u32,
    pub critical: u32,
}

impl Default for RiskMix {
    /// Most tool calls are harmless; a few are critical.
    fn default() -> Self {
        RiskMix {
            low: 70,
            medium: 20,
            high: 8,
            critical: 2,
        }
    }
}

impl std::str::FromStr for RiskMix {
    type Err = String;

    /// `low=70,medium=20,high=8,critical=2` (missing levels weigh 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = RiskMix {
            low: 0,
            medium: 0,
            high: 0,
            critical: 0,
        };
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (level, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected LEVEL=WEIGHT, e.g. high=8"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
            match level.trim() {
                "low" => mix.low = weight,
                "medium" => mix.medium = weight,
                "high" => mix.high = weight,
                "critical" => mix.critical = weight,
                other => {
                    return Err(format!(
                        "`{other}` is not a risk level (low, medium, high, critical)"
                    ))
                }
            }
        }
        if mix.low + mix.medium + mix.high + mix.critical == 0 {
            return Err("the risk mix needs at least one weight above 0".into());
        }
        Ok(mix)
    }
}

impl RiskMix {
    fn pick(&self, rng: &mut Rng) -> &'static str {
        let total = u64::from(self.low + self.medium + self.high + self.critical);
        let mut r = rng.below(total) as u32;
        for (level, weight) in [
            ("low", self.low),
            ("medium", self.medium),
            ("high", self.high),
            ("critical", self.critical),
        ] {
            if r < weight {
                return level;
            }
            r -= weight;
        }
        unreachable!("r < total")
    }
}

/// What the generated events look like.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Endpoints per tenant; ids match [`crate::snapshot::jamf`] for the same count.
    pub endpoints: u32,
    /// Percent of events that are check-ins rather than decisions.
    pub checkin_percent: u32,
    pub risk_mix: RiskMix,
    /// Events per batch (request).
    pub batch: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            endpoints: 3,
            checkin_percent: 5,
            risk_mix: RiskMix::default(),
            batch: 500,
        }
    }
}

/// The identity of endpoint `n` of a tenant, shared by events and snapshots.
pub struct EndpointIdentity {
    pub endpoint_id: String,
    pub serial: String,
    pub hostname: String,
    pub user: String,
}

pub fn endpoint_identity(tenant: &str, n: u32) -> EndpointIdentity {
    EndpointIdentity {
        endpoint_id: format!("{tenant}-ep-{n:07}"),
        serial: format!("SN{:010}", u64::from(n) * 7919 % 10_000_000_000),
        hostname: format!("{tenant}-host-{n:07}"),
        user: format!("user{n}@{tenant}.example"),
    }
}

/// Width of the renumbered part of an event id (`ld-<worker>-<sequence>`).
const SEQ_DIGITS: usize = 12;

/// An NDJSON batch for one tenant whose event ids are renumbered in place for each request.
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    body: Vec<u8>,
    /// Where each event's sequence digits start in `body`.
    seq_offsets: Vec<usize>,
}

impl BatchTemplate {
    /// `worker` keeps ids unique across concurrent senders; `time` is the events' RFC 3339 time.
    pub fn build(
        workload: &Workload,
        tenant: &str,
        worker: u16,
        time: &str,
        rng: &mut Rng,
    ) -> Self {
        let mut body = String::with_capacity(workload.batch * 720);
        let mut seq_offsets = Vec::with_capacity(workload.batch);
        for _ in 0..workload.batch {
            let endpoint = endpoint_identity(
                tenant,
                1 + rng.below(u64::from(workload.endpoints.max(1))) as u32,
            );
            let _ = write!(body, "{{\"event_id\":\"ld-{worker:05}-");
            seq_offsets.push(body.len());
            body.push_str(&"0".repeat(SEQ_DIGITS));
            body.push('"');
            if rng.below(100) < u64::from(workload.checkin_percent) {
                push_checkin(&mut body, tenant, time, &endpoint, rng);
            } else {
                push_decision(
                    &mut body,
                    tenant,
                    time,
                    &endpoint,
                    workload.risk_mix.pick(rng),
                    rng,
                );
            }
            body.push_str("}\n");
        }
        BatchTemplate {
            body: body.into_bytes(),
            seq_offsets,
        }
    }

    pub fn events(&self) -> usize {
        self.seq_offsets.len()
    }

    pub fn len_bytes(&self) -> usize {
        self.body.len()
    }

    /// Writes the batch into `out` (cleared first) with sequence numbers `first_seq..`.
    pub fn stamp(&self, first_seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.body);
        for (i, &at) in self.seq_offsets.iter().enumerate() {
            let mut n = first_seq + i as u64;
            for d in out[at..at + SEQ_DIGITS].iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
    }
}

const TOOLS: [(&str, &str, &str); 6] = [
    (
        "github",
        "github.create_pull_request",
        "https://api.github.com",
    ),
    ("github", "github.push_files", "https://api.github.com"),
    ("slack", "slack.post_message", "https://slack.com/api"),
    ("filesystem", "fs.read_file", "file:///Users/shared"),
    ("postgres", "db.query", "postgres://analytics.internal:5432"),
    ("jira", "jira.create_issue", "https://acme.atlassian.net"),
];

fn push_decision(
    body: &mut String,
    tenant: &str,
    time: &str,
    ep: &EndpointIdentity,
    risk: &'static str,
    rng: &mut Rng,
) {
    let decision = match risk {
        "low" => "allow",
        "medium" if rng.below(5) == 0 => "step_up",
        "medium" => "allow",
        "high" if rng.below(2) == 0 => "step_up",
        _ => "block",
    };
    let (server, tool, target) = TOOLS[rng.below(TOOLS.len() as u64) as usize];
    let surface = if rng.below(4) == 0 { "browser" } else { "mcp" };
    let _ = write!(
        body,
        ",\"type\":\"decision\",\"time\":\"{time}\",\"tenant_id\":\"{tenant}\",\
         \"endpoint_id\":\"{}\",\"device_serial\":\"{}\",\"hostname\":\"{}\",\"user\":\"{}\",\
         \"surface\":\"{surface}\",\"action\":{{\"kind\":\"tool_call\",\"tool\":\"{tool}\",\
         \"mcp_server\":\"{server}\",\"target\":\"{target}\",\"arguments_sha256\":\"{:016x}{:016x}\"}},\
         \"risk\":\"{risk}\",\"decision\":\"{decision}\",\
         \"policy\":{{\"id\":\"shadow-ai-default\",\"version\":3,\"rule\":\"{risk}_{decision}\"}},\
         \"compliance_profile\":\"soc2\",\"reason\":\"{}\",\"session_id\":\"s-{:012x}\",\
         \"agent\":{{\"name\":\"claude-code\",\"version\":\"2.1.4\"}},\"proxy_version\":\"0.2.7\"",
        ep.endpoint_id,
        ep.serial,
        ep.hostname,
        ep.user,
        rng.next_u64(),
        rng.next_u64(),
        match decision {
            "allow" => "sanctioned MCP server within policy",
            "step_up" => "sensitive action requires approval",
            _ => "unsanctioned MCP server for this data class",
        },
        rng.next_u64() & 0xffff_ffff_ffff,
    );
}

fn push_checkin(body: &mut String, tenant: &str, time: &str, ep: &EndpointIdentity, rng: &mut Rng) {
    let status = if rng.below(20) == 0 {
        "degraded"
    } else {
        "healthy"
    };
    let _ = write!(
        body,
        ",\"type\":\"checkin\",\"time\":\"{time}\",\"tenant_id\":\"{tenant}\",\
         \"endpoint_id\":\"{}\",\"hostname\":\"{}\",\"agent_version\":\"0.2.7\",\"os\":\"macOS\",\
         \"os_version\":\"15.1\",\"status\":\"{status}\",\"policy_version\":\"42\"",
        ep.endpoint_id, ep.hostname,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(batch: usize) -> BatchTemplate {
        let workload = Workload {
            endpoints: 100,
            batch,
            ..Workload::default()
        };
        BatchTemplate::build(
            &workload,
            "acme",
            3,
            "2026-12-01T10:00:00.000Z",
            &mut Rng::new(7),
        )
    }

    #[test]
    fn every_line_is_a_valid_event_of_the_tenant_with_a_known_endpoint() {
        let t = template(200);
        let mut out = Vec::new();
        t.stamp(0, &mut out);
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("valid JSON"))
            .collect();
        assert_eq!(lines.len(), 200);
        for e in &lines {
            assert_eq!(e["tenant_id"], "acme");
            let ep = e["endpoint_id"].as_str().unwrap();
            let n: u32 = ep.strip_prefix("acme-ep-").unwrap().parse().unwrap();
            assert!((1..=100).contains(&n));
            match e["type"].as_str().unwrap() {
                "decision" => {
                    let risk = e["risk"].as_str().unwrap();
                    let decision = e["decision"].as_str().unwrap();
                    assert!(["low", "medium", "high", "critical"].contains(&risk));
                    if risk == "critical" {
                        assert_eq!(decision, "block");
                    }
                    if risk == "low" {
                        assert_eq!(decision, "allow");
                    }
                    assert_eq!(e["device_serial"], endpoint_identity("acme", n).serial);
                }
                "checkin" => assert!(e["status"].is_string()),
                other => panic!("unexpected type {other}"),
            }
        }
        // About 700 bytes per decision, as the benchmarks' targets assume.
        let per_event = t.len_bytes() / t.events();
        assert!(
            (600..800).contains(&per_event),
            "{per_event} bytes per event"
        );
    }

    #[test]
    fn stamping_renumbers_ids_and_leaves_the_rest() {
        let t = template(3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        t.stamp(0, &mut a);
        t.stamp(999_999_999_998, &mut b);
        let ids = |body: &[u8]| -> Vec<String> {
            body.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_slice::<serde_json::Value>(l).unwrap()["event_id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(
            ids(&a),
            [
                "ld-00003-000000000000",
                "ld-00003-000000000001",
                "ld-00003-000000000002"
            ]
        );
        assert_eq!(
            ids(&b),
            [
                "ld-00003-999999999998",
                "ld-00003-999999999999",
                "ld-00003-000000000000"
            ]
        );
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn risk_mix_parses_and_names_mistakes() {
        assert_eq!(
            "low=1,critical=3".parse::<RiskMix>().unwrap(),
            RiskMix {
                low: 1,
                medium: 0,
                high: 0,
                critical: 3
            }
        );
        assert!("severe=1"
            .parse::<RiskMix>()
            .unwrap_err()
            .contains("`severe` is not a risk level"));
        assert!("low=x"
            .parse::<RiskMix>()
            .unwrap_err()
            .contains("whole number"));
        assert!("low=0"
            .parse::<RiskMix>()
            .unwrap_err()
            .contains("at least one"));
        let mix = "high=1".parse::<RiskMix>().unwrap();
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| mix.pick(&mut rng) == "high"));
    }
}
