//! The TOML schema: reads every section, applies defaults and cross-checks references. One
//! module per section; the helpers every section uses are here.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::walker::{resolve_path, Errors, Obj};
use crate::*;

mod api;
mod mdm;
mod sinks;
mod sources;
mod vrl_tests;

use api::read_api;
use mdm::read_mdm;
use sinks::read_sinks;
use sources::read_sources;
use vrl_tests::read_tests;

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
pub(super) const GIB: u64 = 1024 * MIB;

pub(crate) fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let mut message = e.message().to_string();
        if let Some(span) = e.span() {
            let line = text[..span.start].matches('\n').count() + 1;
            let col = span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1) + 1;
            message = format!("TOML syntax error at line {line}, column {col}: {message}");
        }
        vec![ConfigError {
            path: String::new(),
            message,
        }]
    })?;
    let mut errs = Errors::default();
    let mut root = Obj::new("", &table);

    let data_dir = root
        .path_value("data_dir", base, &mut errs)
        .unwrap_or_else(|| resolve_path(base, "thoth-data"));
    let tenants = read_tenants(&mut root, &mut errs);
    let tenant_ids: HashSet<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    let api = read_api(&mut root, base, &tenant_ids, &mut errs);
    let wal = read_wal(&mut root, &mut errs);
    let mdm = read_mdm(&mut root, base, &data_dir, &tenant_ids, &mut errs);
    let checkins = read_checkins(&mut root, &mut errs);
    let state = read_state(&mut root, base, &mut errs);
    let sinks = read_sinks(&mut root, base, &tenant_ids, &mut errs);

    let (webhook_sources, kafka_sources) = read_sources(&mut root, base, &tenant_ids, &mut errs);
    let transform = root.table("transform", &mut errs).and_then(|mut t| {
        let source = t.req_string("source", &mut errs);
        let key = t.key_path("source");
        t.finish(&mut errs);
        source.map(|source| VrlSource { key, source })
    });
    let tests = read_tests(&mut root, &sinks, &mut errs);
    root.finish(&mut errs);

    if let Some(api) = &api {
        if api.max_body_bytes > wal.max_bytes {
            errs.push(
                "api.max_body_bytes",
                format!(
                    "larger than wal.max_bytes ({}): such a request could never be accepted",
                    wal.max_bytes
                ),
            );
        }
    }

    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    Ok(Config {
        data_dir,
        api: api.expect("no errors means the api section was read"),
        wal,
        tenants,
        mdm,
        checkins,
        state,
        sinks,
        webhook_sources,
        kafka_sources,
        transform,
        tests,
        warnings: errs.1 .0,
    })
}

pub(super) fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// Properties the gateway sets itself: it stores offsets only once events are in the WAL.
pub(super) const KAFKA_RESERVED: [&str; 3] =
    ["enable.auto.offset.store", "enable.auto.commit", "group.id"];

/// `librdkafka = { "prop" = "value" }`.
pub(super) fn read_librdkafka(o: &mut Obj, errs: &mut Errors) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(mut t) = o.table("librdkafka", errs) {
        let keys: Vec<String> = t.keys().map(str::to_string).collect();
        for k in keys {
            if KAFKA_RESERVED.contains(&k.as_str()) || k == "bootstrap.servers" {
                errs.push(&t.key_path(&k), "set by thoth-gateway (it stores offsets only after the events are in the WAL); remove it");
                t.get(&k);
                continue;
            }
            match t.get(&k) {
                // `"${ENV}"` is read from the environment (e.g. `sasl.password`).
                Some(toml::Value::String(v)) => match crate::secret::resolve_inline(v) {
                    Ok(v) => out.push((k, v.expose().to_string())),
                    Err(e) => errs.push(&t.key_path(&k), e),
                },
                Some(toml::Value::Integer(v)) => out.push((k, v.to_string())),
                Some(toml::Value::Boolean(v)) => out.push((k, v.to_string())),
                _ => errs.push(&t.key_path(&k), "expected a string, number or boolean"),
            }
        }
        t.finish(errs);
    }
    out
}

/// Names used as file names (cursors, snapshots) and in metrics labels.
pub(super) fn check_name(path: &str, name: &str, errs: &mut Errors) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if !ok {
        errs.push(
            path,
            format!("{name:?} is not a valid name: use 1 to 64 letters, digits, '_' or '-'"),
        );
    }
    ok
}

pub(super) fn check_tenant(path: &str, id: &str, tenants: &HashSet<&str>, errs: &mut Errors) {
    if !tenants.contains(id) {
        errs.push(path, format!("tenant {id:?} is not listed in [[tenants]]"));
    }
}

pub(super) fn read_tenants(root: &mut Obj, errs: &mut Errors) -> Vec<Tenant> {
    let mut tenants = Vec::new();
    let mut seen = HashSet::new();
    for mut t in root.tables("tenants", errs) {
        let id = t.req_string("id", errs);
        let name = t.string("name", errs);
        let compliance_profile = t.string("compliance_profile", errs);
        if let Some(id) = id {
            if id.len() > 256 {
                errs.push(&t.key_path("id"), "longer than 256 bytes");
            } else if !seen.insert(id.clone()) {
                errs.push(&t.key_path("id"), format!("tenant {id:?} is listed twice"));
            } else {
                tenants.push(Tenant {
                    name: name.unwrap_or_else(|| id.clone()),
                    id,
                    compliance_profile,
                });
            }
        }
        t.finish(errs);
    }
    if tenants.is_empty() && !root.has("tenants") {
        errs.push("tenants", "at least one [[tenants]] entry is required");
    }
    tenants
}

/// The fewest segments a WAL of `max_bytes` must hold.
pub(super) const MIN_SEGMENTS: u64 = 4;

pub(super) fn read_wal(root: &mut Obj, errs: &mut Errors) -> WalConfig {
    let empty = toml::Table::new();
    let mut wal = root
        .table("wal", errs)
        .unwrap_or_else(|| Obj::new("wal", &empty));
    let max_bytes = wal
        .size("max_bytes", 64 * KIB, 1 << 50, errs)
        .unwrap_or(4 * GIB);
    let interval = wal.duration("fsync_interval", millis(1)..=secs(3600), errs);
    let fsync = match wal.string("fsync", errs).as_deref() {
        None | Some("always") => {
            if interval.is_some() {
                errs.push(
                    &wal.key_path("fsync_interval"),
                    "only used with fsync = \"interval\"",
                );
            }
            FsyncMode::Always
        }
        Some("interval") => FsyncMode::Interval(interval.unwrap_or(Duration::from_secs(1))),
        Some(other) => {
            errs.push(
                &wal.key_path("fsync"),
                format!("must be \"always\" or \"interval\" (got {other:?})"),
            );
            FsyncMode::Always
        }
    };
    let segment_bytes = wal.size("segment_bytes", 4 * KIB, 1 << 40, errs);
    if let Some(segment) = segment_bytes {
        // Space is freed a whole segment at a time, and the segment being written is never
        // freed: with fewer than 4 segments in the log, a full log frees too little or nothing.
        if segment.saturating_mul(MIN_SEGMENTS) > max_bytes {
            errs.push(
                &wal.key_path("segment_bytes"),
                format!(
                    "{segment} bytes: at least {MIN_SEGMENTS} segments must fit in wal.max_bytes ({max_bytes} bytes); use at most {} bytes",
                    max_bytes / MIN_SEGMENTS
                ),
            );
        }
    }
    wal.finish(errs);
    WalConfig {
        max_bytes,
        fsync,
        segment_bytes,
    }
}

pub(super) fn read_checkins(root: &mut Obj, errs: &mut Errors) -> CheckinsConfig {
    let empty = toml::Table::new();
    let mut c = root
        .table("checkins", errs)
        .unwrap_or_else(|| Obj::new("checkins", &empty));
    let stale_after = c
        .duration("stale_after", secs(1)..=days(365), errs)
        .unwrap_or(Duration::from_secs(15 * 60));
    let max_unknown_endpoints = c
        .int("max_unknown_endpoints", 0, 100_000_000, errs)
        .unwrap_or(100_000);
    c.finish(errs);
    CheckinsConfig {
        stale_after,
        max_unknown_endpoints,
    }
}

pub(super) fn read_state(root: &mut Obj, base: &Path, errs: &mut Errors) -> StateConfig {
    let empty = toml::Table::new();
    let mut s = root
        .table("state", errs)
        .unwrap_or_else(|| Obj::new("state", &empty));
    let backend = s.string("backend", errs).unwrap_or_else(|| "local".into());
    let config = match backend.as_str() {
        "local" => {
            for key in [
                "url",
                "url_file",
                "key_prefix",
                "replica_id",
                "expected_replicas",
            ] {
                if s.has(key) {
                    s.get(key);
                    errs.push(&s.key_path(key), "only read with backend = \"redis\"");
                }
            }
            Some(StateConfig::Local)
        }
        "redis" => {
            let url = s.secret("url", base, errs);
            if url.is_none() && !s.has("url") && !s.has("url_file") {
                errs.push(
                    &s.key_path("url"),
                    "backend = \"redis\" needs `url` or `url_file`",
                );
            }
            let url = url.filter(|u| {
                let scheme_ok = ["redis://", "rediss://"].iter().any(|p| {
                    u.expose()
                        .strip_prefix(p)
                        .is_some_and(|rest| !rest.is_empty())
                });
                if !scheme_ok {
                    // Never echo the URL: it may hold a password.
                    errs.push(&s.key_path("url"), "not a redis:// or rediss:// URL");
                }
                scheme_ok
            });
            let key_prefix = s
                .string("key_prefix", errs)
                .unwrap_or_else(|| "thoth:".into());
            let replica_id = s
                .string("replica_id", errs)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(default_replica_id);
            let expected_replicas = s.int("expected_replicas", 1, 1024, errs).unwrap_or(1);
            url.map(|url| {
                StateConfig::Redis(RedisState {
                    url,
                    key_prefix,
                    replica_id,
                    expected_replicas,
                })
            })
        }
        other => {
            errs.push(
                &s.key_path("backend"),
                format!("{other:?} is not a state backend (local, redis)"),
            );
            None
        }
    };
    s.finish(errs);
    config.unwrap_or(StateConfig::Local)
}

/// The host's name, else the process id: unique enough to tell replicas apart in claims.
fn default_replica_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

pub(super) fn read_url(s: &mut Obj, key: &str, errs: &mut Errors) -> Option<String> {
    let url = s.req_string(key, errs)?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {
            Some(url.trim_end_matches('/').to_string())
        }
        _ => {
            errs.push(
                &s.key_path(key),
                format!("{url:?} is not an http:// or https:// URL"),
            );
            None
        }
    }
}
