//! The TOML schema: reads every section, applies defaults and cross-checks references.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::walker::{resolve_path, Errors, Obj};
use crate::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Elasticsearch's default `http.max_content_length`: a bulk request must stay below it.
const ELASTIC_MAX_CONTENT_LENGTH: u64 = 100 * MIB;

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
        sinks,
        webhook_sources,
        kafka_sources,
        transform,
        tests,
        warnings: errs.1 .0,
    })
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn read_tests(
    root: &mut Obj,
    sinks: &BTreeMap<String, SinkConfig>,
    errs: &mut Errors,
) -> Vec<ConfigTest> {
    let mut out = Vec::new();
    for mut t in root.tables("tests", errs) {
        let name = t.req_string("name", errs);
        let input = match t.get("input") {
            Some(v @ toml::Value::Table(_)) => serde_json::to_value(v).ok(),
            Some(_) => {
                errs.push(&t.key_path("input"), "expected a table (an event)");
                None
            }
            None => {
                errs.push(&t.key_path("input"), "is required (the event to test)");
                None
            }
        };
        let expect_sinks = t.strings("expect_sinks", errs);
        if let Some(list) = &expect_sinks {
            for (i, s) in list.iter().enumerate() {
                if !sinks.contains_key(s) {
                    errs.push(
                        &format!("{}[{i}]", t.key_path("expect_sinks")),
                        format!("no sink named {s:?}"),
                    );
                }
            }
        }
        let expect = t.string("expect", errs).map(|source| VrlSource {
            key: t.key_path("expect"),
            source,
        });
        let mut expect_remap = Vec::new();
        if let Some(mut r) = t.table("expect_remap", errs) {
            let keys: Vec<String> = r.keys().map(str::to_string).collect();
            for sink in keys {
                let key = r.key_path(&sink);
                match sinks.get(&sink) {
                    Some(s) if s.remap.is_none() => {
                        errs.push(&key, format!("sink {sink:?} has no remap"));
                        r.get(&sink);
                    }
                    None => {
                        errs.push(&key, format!("no sink named {sink:?}"));
                        r.get(&sink);
                    }
                    Some(_) => {
                        if let Some(source) = r.string(&sink, errs) {
                            expect_remap.push((sink, VrlSource { key, source }));
                        }
                    }
                }
            }
            r.finish(errs);
        }
        if expect_sinks.is_none() && expect.is_none() && expect_remap.is_empty() {
            errs.push(&t.path, "a test needs expect_sinks, expect or expect_remap");
        }
        let path = t.path.clone();
        t.finish(errs);
        if let (Some(name), Some(input)) = (name, input) {
            out.push(ConfigTest {
                name,
                path,
                input,
                expect_sinks,
                expect,
                expect_remap,
            });
        }
    }
    out
}

/// Properties the gateway sets itself: it stores offsets only once events are in the WAL.
const KAFKA_RESERVED: [&str; 3] = ["enable.auto.offset.store", "enable.auto.commit", "group.id"];

/// `librdkafka = { "prop" = "value" }`.
fn read_librdkafka(o: &mut Obj, errs: &mut Errors) -> Vec<(String, String)> {
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

fn read_sources(
    root: &mut Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> (Vec<WebhookSourceConfig>, Vec<KafkaSourceConfig>) {
    let mut out = Vec::new();
    let mut kafka = Vec::new();
    let Some(mut sources) = root.table("sources", errs) else {
        return (out, kafka);
    };
    let mut kafka_names = HashSet::new();
    for mut k in sources.tables("kafka", errs) {
        let name = k.req_string("name", errs);
        if let Some(n) = &name {
            if check_name(&k.key_path("name"), n, errs) && !kafka_names.insert(n.clone()) {
                errs.push(
                    &k.key_path("name"),
                    format!("kafka source {n:?} is listed twice"),
                );
            }
        }
        let bootstrap_servers = k.req_string("bootstrap_servers", errs);
        let topics = k.strings("topics", errs);
        if topics.as_ref().is_some_and(|t| t.is_empty()) || !k.has("topics") {
            errs.push(&k.key_path("topics"), "needs at least one topic");
        }
        let group_id = k.req_string("group_id", errs);
        let tenant_id = k.string("tenant_id", errs);
        if let Some(t) = &tenant_id {
            check_tenant(&k.key_path("tenant_id"), t, tenants, errs);
        }
        let librdkafka = read_librdkafka(&mut k, errs);
        k.finish(errs);
        if let (Some(name), Some(bootstrap_servers), Some(topics), Some(group_id)) =
            (name, bootstrap_servers, topics, group_id)
        {
            kafka.push(KafkaSourceConfig {
                name,
                bootstrap_servers,
                topics,
                group_id,
                tenant_id,
                librdkafka,
            });
        }
    }
    let mut names = HashSet::new();
    for mut w in sources.tables("webhooks", errs) {
        let name = w.req_string("name", errs);
        if let Some(n) = &name {
            if check_name(&w.key_path("name"), n, errs) && !names.insert(n.clone()) {
                errs.push(
                    &w.key_path("name"),
                    format!("webhook source {n:?} is listed twice"),
                );
            }
        }
        let tenant_id = w.string("tenant_id", errs);
        if let Some(t) = &tenant_id {
            check_tenant(&w.key_path("tenant_id"), t, tenants, errs);
        }
        let secrets = read_webhook_secrets(&mut w, "secrets", base, errs);
        let tolerance = w
            .duration("tolerance", secs(1)..=days(1), errs)
            .unwrap_or(Duration::from_secs(300));
        w.finish(errs);
        if let (Some(name), Some(secrets)) = (name, secrets) {
            out.push(WebhookSourceConfig {
                name,
                tenant_id,
                secrets,
                tolerance,
            });
        }
    }
    sources.finish(errs);
    (out, kafka)
}

/// `whsec_` secrets from `KEY = [..]`, `KEY = "${ENV}"` (one per line) or `KEY_file` (one
/// per line). At least one is required.
fn read_webhook_secrets(
    o: &mut Obj,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<Vec<thoth_event::WebhookSecret>> {
    let file_key = format!("{key}_file");
    let path = o.key_path(key);
    let lines: Vec<String> = match (o.has(key), o.has(&file_key)) {
        (true, true) => {
            errs.push(
                &path,
                format!("give either `{key}` or `{file_key}`, not both"),
            );
            o.get(key);
            o.get(&file_key);
            return None;
        }
        (false, false) => {
            errs.push(
                &path,
                format!("is required (or `{file_key}`, one whsec_ secret per line)"),
            );
            return None;
        }
        (true, false) => match o.get(key) {
            Some(toml::Value::Array(items)) => {
                let mut v = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(crate::secret::resolve_inline) {
                        Some(Ok(s)) => v.push(s.expose().to_string()),
                        Some(Err(e)) => errs.push(&format!("{path}[{i}]"), e),
                        None => errs.push(&format!("{path}[{i}]"), "expected a string"),
                    }
                }
                v
            }
            Some(toml::Value::String(s)) => match crate::secret::resolve_inline(s) {
                Ok(s) => s.expose().lines().map(str::to_string).collect(),
                Err(e) => {
                    errs.push(&path, e);
                    return None;
                }
            },
            _ => {
                errs.push(&path, "expected a list of whsec_ secrets");
                return None;
            }
        },
        (false, true) => {
            let p = o.path_value(&file_key, base, errs)?;
            match std::fs::read_to_string(&p) {
                Ok(text) => text.lines().map(str::to_string).collect(),
                Err(e) => {
                    errs.push(
                        &o.key_path(&file_key),
                        format!("cannot read {}: {e}", p.display()),
                    );
                    return None;
                }
            }
        }
    };
    let mut secrets = Vec::new();
    for (i, line) in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match thoth_event::WebhookSecret::parse(line) {
            Ok(s) => secrets.push(s),
            Err(e) => errs.push(&path, format!("secret {}: {e}", i + 1)),
        }
    }
    if secrets.is_empty() {
        errs.push(&path, "no whsec_ secret given");
        return None;
    }
    Some(secrets)
}

fn read_webhook_sink(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<WebhookSinkConfig> {
    let url = read_url(s, "url", errs);
    let secrets = if s.has("secret") || s.has("secret_file") {
        read_webhook_secrets(s, "secret", base, errs)
    } else {
        errs.push(
            &s.key_path("secret"),
            "is required (or secret_file): a whsec_ secret to sign with",
        );
        None
    };
    let mut headers = Vec::new();
    if let Some(mut h) = s.table("headers", errs) {
        let keys: Vec<String> = h.keys().map(str::to_string).collect();
        for k in keys {
            let lower = k.to_ascii_lowercase();
            if lower.starts_with("webhook-")
                || lower == "content-type"
                || lower == "content-encoding"
            {
                errs.push(&h.key_path(&k), "set by the gateway; cannot be overridden");
                h.get(&k);
                continue;
            }
            if let Some(v) = h.string(&k, errs) {
                headers.push((k, v));
            }
        }
        h.finish(errs);
    }
    let hub_secret = s.secret("hub_signature_secret", base, errs);
    Some(WebhookSinkConfig {
        url: url?,
        secrets: secrets?,
        headers,
        hub_secret,
    })
}

/// Names used as file names (cursors, snapshots) and in metrics labels.
fn check_name(path: &str, name: &str, errs: &mut Errors) -> bool {
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

fn check_tenant(path: &str, id: &str, tenants: &HashSet<&str>, errs: &mut Errors) {
    if !tenants.contains(id) {
        errs.push(path, format!("tenant {id:?} is not listed in [[tenants]]"));
    }
}

fn read_tenants(root: &mut Obj, errs: &mut Errors) -> Vec<Tenant> {
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

fn read_api(
    root: &mut Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<ApiConfig> {
    let empty = toml::Table::new();
    let mut api = root
        .table("api", errs)
        .unwrap_or_else(|| Obj::new("api", &empty));
    let listen = match api.string("listen", errs) {
        Some(s) => match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(
                    &api.key_path("listen"),
                    format!("{s:?} is not an address such as \"0.0.0.0:8686\""),
                );
                None
            }
        },
        None => Some("127.0.0.1:8686".parse().unwrap()),
    };
    let max_body_bytes = api
        .size("max_body_bytes", 1024, 1024 * MIB, errs)
        .unwrap_or(10 * MIB);
    let max_event_bytes = api
        .size("max_event_bytes", 256, 64 * MIB, errs)
        .unwrap_or(MIB);
    let max_depth = api.int("max_depth", 2, 512, errs).unwrap_or(32);
    let max_members = api.int("max_members", 1, 1_000_000, errs).unwrap_or(10_000);
    let max_batch_events = api
        .int("max_batch_events", 1, 1_000_000, errs)
        .unwrap_or(10_000);
    let max_connections = api
        .int("max_connections", 1, 1_000_000, errs)
        .unwrap_or(4096);
    let mut tokens = Vec::new();
    for mut t in api.tables("tokens", errs) {
        if let Some(tok) = read_token(&mut t, base, tenants, errs) {
            tokens.push(tok);
        }
        t.finish(errs);
    }
    if tokens.is_empty() && errs.0.iter().all(|e| !e.path.starts_with("api.tokens")) {
        errs.push(
            "api.tokens",
            "at least one [[api.tokens]] entry is required: nothing could be ingested without one",
        );
    }
    let tls = api
        .table("tls", errs)
        .and_then(|t| read_ingest_tls(t, base, tenants, errs));
    api.finish(errs);
    Some(ApiConfig {
        listen: listen?,
        max_body_bytes,
        max_event_bytes,
        max_depth,
        max_members,
        max_batch_events,
        max_connections,
        tokens,
        tls,
    })
}

/// `[api.tls]`: HTTPS for the listener, optionally with client certificates mapped to
/// tenants (`[[api.tls.clients]]`).
fn read_ingest_tls(
    mut t: Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<IngestTls> {
    let file = |t: &mut Obj, key: &str, required: bool, errs: &mut Errors| {
        if required && !t.has(key) {
            errs.push(&t.key_path(key), "is required");
            return None;
        }
        let path = t.path_value(key, base, errs)?;
        if !path.is_file() {
            errs.push(
                &t.key_path(key),
                format!("{} is not a readable file", path.display()),
            );
            return None;
        }
        Some(path)
    };
    let cert_file = file(&mut t, "cert_file", true, errs);
    let key_file = file(&mut t, "key_file", true, errs);
    let client_ca_file = file(&mut t, "client_ca_file", false, errs);
    let client_auth_required = match t.string("client_auth", errs).as_deref() {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => {
            errs.push(
                &t.key_path("client_auth"),
                format!("{other:?} is not `optional` or `required`"),
            );
            false
        }
    };
    if client_auth_required && client_ca_file.is_none() && !t.has("client_ca_file") {
        errs.push(
            &t.key_path("client_auth"),
            "`required` needs `client_ca_file` (the CA that signs the clients' certificates)",
        );
    }
    let mut clients: Vec<ClientCertConfig> = Vec::new();
    let has_ca = t.has("client_ca_file");
    for mut c in t.tables("clients", errs) {
        if !has_ca {
            errs.push(
                &c.path,
                "client certificates need `client_ca_file` in [api.tls]",
            );
        }
        let admin = c.bool("admin", errs).unwrap_or(false);
        let tenant_id = c.string("tenant_id", errs);
        match (&tenant_id, admin) {
            (Some(id), false) => check_tenant(&c.key_path("tenant_id"), id, tenants, errs),
            (Some(_), true) => errs.push(
                &c.key_path("tenant_id"),
                "give `tenant_id` or `admin = true`, not both",
            ),
            (None, false) => errs.push(&c.path, "a client needs `tenant_id` or `admin = true`"),
            (None, true) => {}
        }
        let dns_name = c.string("dns_name", errs);
        let sha256 = c.string("sha256", errs).and_then(|h| {
            let mut out = [0u8; 32];
            let clean: String = h.chars().filter(|ch| *ch != ':').collect();
            match hex::decode_to_slice(clean.trim(), &mut out) {
                Ok(()) => Some(out),
                Err(_) => {
                    errs.push(
                        &c.key_path("sha256"),
                        "must be the 64 hex digits of the certificate's SHA-256 fingerprint",
                    );
                    None
                }
            }
        });
        if dns_name.is_some() == (sha256.is_some() || c.has("sha256")) {
            errs.push(&c.path, "give exactly one of `dns_name` (a DNS name the certificate is valid for) or `sha256` (its fingerprint)");
        }
        // One certificate must never stand for two entries (two tenants, say): a name matches
        // exactly, so it cannot be a pattern, and no name or fingerprint is listed twice.
        if let Some(name) = &dns_name {
            if name.contains('*') {
                errs.push(
                    &c.key_path("dns_name"),
                    format!(
                        "{name:?}: wildcards are not allowed; list each client's exact DNS name"
                    ),
                );
            }
            if clients.iter().any(|o| {
                o.dns_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) {
                errs.push(
                    &c.key_path("dns_name"),
                    format!("{name:?} is listed by an earlier [[api.tls.clients]] entry"),
                );
            }
        }
        if sha256.is_some() && clients.iter().any(|o| o.sha256 == sha256) {
            errs.push(
                &c.key_path("sha256"),
                "this fingerprint is listed by an earlier [[api.tls.clients]] entry",
            );
        }
        let max_events_per_second = c.int("max_events_per_second", 1, 100_000_000, errs);
        c.finish(errs);
        clients.push(ClientCertConfig {
            dns_name,
            sha256,
            tenant_id: if admin { None } else { tenant_id },
            admin,
            max_events_per_second,
        });
    }
    t.finish(errs);
    Some(IngestTls {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
        client_auth_required,
        clients,
    })
}

/// Tokens shorter than this are accepted with a warning.
const MIN_TOKEN_BYTES: usize = 16;

fn read_token(
    t: &mut Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<TokenConfig> {
    let admin = t.bool("admin", errs).unwrap_or(false);
    let tenant_id = t.string("tenant_id", errs);
    match (&tenant_id, admin) {
        (Some(id), false) => check_tenant(&t.key_path("tenant_id"), id, tenants, errs),
        (Some(_), true) => errs.push(
            &t.key_path("tenant_id"),
            "an admin token may submit for every tenant: remove tenant_id or admin",
        ),
        (None, false) => errs.push(
            &t.path,
            "a token needs either `tenant_id` (a tenant's ingest token) or `admin = true`",
        ),
        (None, true) => {}
    }
    let max_events_per_second = t.int("max_events_per_second", 1, 100_000_000, errs);
    let secret = t.secret("token", base, errs);
    let digest = t.string("token_sha256", errs);
    if let Some(token) = &secret {
        if token.expose().len() < MIN_TOKEN_BYTES {
            errs.warn(
                &t.key_path(if t.has("token") { "token" } else { "token_file" }),
                format!(
                    "the token is shorter than {MIN_TOKEN_BYTES} bytes and can be guessed; use at least {MIN_TOKEN_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
                ),
            );
        }
    }
    let sha256 = match (secret, digest) {
        (Some(s), None) => Some(Sha256::digest(s.expose().as_bytes()).into()),
        (None, Some(hex_digest)) => {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(hex_digest.trim(), &mut out) {
                Ok(()) => Some(out),
                Err(_) => {
                    errs.push(
                        &t.key_path("token_sha256"),
                        "must be the 64 hex digits of the token's SHA-256",
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            errs.push(
                &t.key_path("token_sha256"),
                "give one of `token`, `token_file` or `token_sha256`",
            );
            None
        }
        (None, None) => {
            if !t.has("token") && !t.has("token_file") {
                errs.push(
                    &t.path,
                    "one of `token`, `token_file` or `token_sha256` is required",
                );
            }
            None
        }
    }?;
    Some(TokenConfig {
        tenant_id: if admin { None } else { tenant_id },
        admin,
        sha256,
        max_events_per_second,
    })
}

/// The fewest segments a WAL of `max_bytes` must hold.
const MIN_SEGMENTS: u64 = 4;

fn read_wal(root: &mut Obj, errs: &mut Errors) -> WalConfig {
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

fn read_mdm(
    root: &mut Obj,
    base: &Path,
    data_dir: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> MdmConfig {
    let empty = toml::Table::new();
    let mut mdm = root
        .table("mdm", errs)
        .unwrap_or_else(|| Obj::new("mdm", &empty));
    let refresh_interval = mdm
        .duration("refresh_interval", secs(1)..=days(7), errs)
        .unwrap_or(Duration::from_secs(300));
    let max_push_bytes = mdm
        .size("max_push_bytes", KIB, 64 * GIB, errs)
        .unwrap_or(256 * MIB);
    let mut providers = Vec::new();
    let mut names = HashSet::new();
    for mut p in mdm.tables("providers", errs) {
        if let Some(provider) = read_provider(&mut p, base, data_dir, tenants, errs) {
            if !names.insert(provider.name.clone()) {
                errs.push(
                    &p.key_path("name"),
                    format!("provider {:?} is listed twice", provider.name),
                );
            }
            providers.push(provider);
        }
        p.finish(errs);
    }
    let mut fleet_rules = Vec::new();
    for mut r in mdm.tables("fleet_rules", errs) {
        if let Some(rule) = read_fleet_rule(&mut r, tenants, errs) {
            fleet_rules.push(rule);
        }
        r.finish(errs);
    }
    mdm.finish(errs);
    MdmConfig {
        refresh_interval,
        max_push_bytes,
        providers,
        fleet_rules,
    }
}

fn read_provider(
    p: &mut Obj,
    base: &Path,
    data_dir: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<MdmProvider> {
    let name = p.req_string("name", errs);
    if let Some(n) = &name {
        check_name(&p.key_path("name"), n, errs);
    }
    let tenant_id = p.req_string("tenant_id", errs);
    if let Some(t) = &tenant_id {
        check_tenant(&p.key_path("tenant_id"), t, tenants, errs);
    }
    let kind = match p.req_string("kind", errs).as_deref() {
        Some("jamf") => Some(MdmKind::Jamf),
        Some("intune") => Some(MdmKind::Intune),
        Some(other) => {
            errs.push(
                &p.key_path("kind"),
                format!("must be \"jamf\" or \"intune\" (got {other:?})"),
            );
            None
        }
        None => None,
    };
    let snapshot_store = data_dir
        .join("mdm")
        .join(format!("{}.json", name.as_deref().unwrap_or("provider")));
    let (file, source) = match (p.has("file"), p.has("url")) {
        (true, true) => {
            errs.push(&p.key_path("url"), "give either `file` or `url`, not both");
            p.get("url");
            (p.path_value("file", base, errs), None)
        }
        (true, false) => (p.path_value("file", base, errs), Some(MdmSource::File)),
        (false, true) => {
            let api = match kind {
                Some(MdmKind::Jamf) => read_jamf_api(p, base, errs).map(MdmSource::Jamf),
                Some(MdmKind::Intune) => read_intune_api(p, base, errs).map(MdmSource::Intune),
                None => None,
            };
            (Some(snapshot_store), api)
        }
        // Neither: snapshots arrive by PUT /v1/mdm/{provider} only.
        (false, false) => (Some(snapshot_store), Some(MdmSource::Push)),
    };
    let endpoint_id_attribute = p.string("endpoint_id_attribute", errs);
    if endpoint_id_attribute.is_some() && kind == Some(MdmKind::Intune) {
        errs.push(
            &p.key_path("endpoint_id_attribute"),
            "only Jamf Pro providers have extension attributes; Intune devices match by serial or hostname",
        );
    }
    Some(MdmProvider {
        name: name?,
        tenant_id: tenant_id?,
        kind: kind?,
        file: file?,
        source: source?,
        endpoint_id_attribute,
    })
}

fn read_jamf_api(p: &mut Obj, base: &Path, errs: &mut Errors) -> Option<JamfApi> {
    let url = read_url(p, "url", errs);
    let client_id = p.string("client_id", errs);
    let client_secret = p.secret("client_secret", base, errs);
    let token = p.secret("token", base, errs);
    let auth = match (client_id, client_secret, token) {
        (Some(client_id), Some(client_secret), None) => Some(JamfAuth::ClientCredentials {
            client_id,
            client_secret,
        }),
        (None, None, Some(t)) => Some(JamfAuth::Token(t)),
        _ => {
            errs.push(
                &p.path,
                "a Jamf Pro API provider needs client_id + client_secret (API client) or token (bearer)",
            );
            None
        }
    };
    let inventory_path = p
        .string("inventory_path", errs)
        .unwrap_or_else(|| "/api/v3/computers-inventory".to_string());
    if !inventory_path.starts_with('/') {
        errs.push(&p.key_path("inventory_path"), "must start with /");
    }
    let page_size = p.int("page_size", 1, 2000, errs).unwrap_or(100);
    Some(JamfApi {
        url: url?,
        auth: auth?,
        inventory_path,
        page_size,
    })
}

fn read_intune_api(p: &mut Obj, base: &Path, errs: &mut Errors) -> Option<IntuneApi> {
    let url = read_url(p, "url", errs);
    let entra = read_entra_app(p, base, "https://graph.microsoft.com/.default", errs);
    Some(IntuneApi {
        url: url?,
        entra: entra?,
    })
}

/// The Entra ID app settings shared by Intune and Sentinel; `default_scope` is the
/// audience of the API signed in to.
fn read_entra_app(
    o: &mut Obj,
    base: &Path,
    default_scope: &str,
    errs: &mut Errors,
) -> Option<EntraApp> {
    let azure_tenant_id = o.req_string("azure_tenant_id", errs);
    let client_id = o.req_string("client_id", errs);
    let client_secret = o.secret("client_secret", base, errs);
    if client_secret.is_none() && !o.has("client_secret") && !o.has("client_secret_file") {
        errs.push(
            &o.key_path("client_secret"),
            "is required (or client_secret_file)",
        );
    }
    let authority = if o.has("authority") {
        read_url(o, "authority", errs)
    } else {
        Some("https://login.microsoftonline.com".to_string())
    };
    let scope = o
        .string("scope", errs)
        .unwrap_or_else(|| default_scope.to_string());
    Some(EntraApp {
        azure_tenant_id: azure_tenant_id?,
        client_id: client_id?,
        client_secret: client_secret?,
        authority: authority?,
        scope,
    })
}

fn read_fleet_rule(r: &mut Obj, tenants: &HashSet<&str>, errs: &mut Errors) -> Option<FleetRule> {
    let tenant_id = r.string("tenant_id", errs);
    if let Some(t) = &tenant_id {
        check_tenant(&r.key_path("tenant_id"), t, tenants, errs);
    }
    let mut when = Vec::new();
    match r.table("when", errs) {
        Some(mut w) => {
            let keys: Vec<String> = ENDPOINT_FIELDS.iter().map(|s| s.to_string()).collect();
            for key in &keys {
                if let Some(v) = w.get(key) {
                    match v {
                        toml::Value::String(s) => when.push((key.clone(), s.clone())),
                        toml::Value::Boolean(b) => when.push((key.clone(), b.to_string())),
                        _ => errs.push(&w.key_path(key), "expected a string (or a boolean)"),
                    }
                }
            }
            let unknown: Vec<&str> = w.keys().filter(|k| !keys.iter().any(|n| n == k)).collect();
            for extra in unknown {
                errs.push(
                    &w.key_path(extra),
                    format!(
                        "unknown endpoint field; use one of {}",
                        ENDPOINT_FIELDS.join(", ")
                    ),
                );
            }
            w.mark_all_seen();
            w.finish(errs);
        }
        None => {
            if !r.has("when") {
                errs.push(
                    &r.key_path("when"),
                    "is required (e.g. when = { department = \"Engineering\" })",
                );
            }
        }
    }
    let fleet = r.table("fleet", errs);
    let (fleet_id, fleet_name) = match fleet {
        Some(mut f) => {
            let id = f.req_string("id", errs);
            let name = f.string("name", errs);
            f.finish(errs);
            let name = name.or_else(|| id.clone());
            (id, name)
        }
        None => {
            if !r.has("fleet") {
                errs.push(
                    &r.key_path("fleet"),
                    "is required (e.g. fleet = { id = \"eng-macs\", name = \"Engineering Macs\" })",
                );
            }
            (None, None)
        }
    };
    Some(FleetRule {
        tenant_id,
        when,
        fleet_id: fleet_id?,
        fleet_name: fleet_name?,
    })
}

fn read_checkins(root: &mut Obj, errs: &mut Errors) -> CheckinsConfig {
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

fn read_sinks(
    root: &mut Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> BTreeMap<String, SinkConfig> {
    let mut sinks = BTreeMap::new();
    let Some(table) = root.table("sinks", errs) else {
        if !root.has("sinks") {
            errs.push(
                "sinks",
                "at least one sink is required (e.g. [sinks.archive] type = \"file\")",
            );
        }
        return sinks;
    };
    let names: Vec<String> = table.keys().map(|k| k.to_string()).collect();
    let mut table = table;
    for name in names {
        let Some(mut s) = table.table(&name, errs) else {
            continue;
        };
        if check_name(&s.path, &name, errs) {
            if let Some(sink) = read_sink(&name, &mut s, base, tenants, errs) {
                sinks.insert(name.clone(), sink);
            }
        }
        s.finish(errs);
    }
    table.finish(errs);
    if sinks.is_empty() && names_is_empty(&sinks, errs) {
        errs.push("sinks", "at least one sink is required");
    }
    sinks
}

fn names_is_empty(sinks: &BTreeMap<String, SinkConfig>, errs: &Errors) -> bool {
    sinks.is_empty() && errs.0.iter().all(|e| !e.path.starts_with("sinks."))
}

fn read_sink(
    name: &str,
    s: &mut Obj,
    base: &Path,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<SinkConfig> {
    let sink_tenants = s.strings("tenants", errs);
    if let Some(list) = &sink_tenants {
        for (i, t) in list.iter().enumerate() {
            check_tenant(&format!("{}[{i}]", s.key_path("tenants")), t, tenants, errs);
        }
    }
    let when_full = match s.string("when_full", errs).as_deref() {
        None | Some("block") => WhenFull::Block,
        Some("drop_oldest") => {
            errs.push(
                &s.key_path("when_full"),
                "\"drop_oldest\" is not supported yet by this version of thoth-gateway; use \"block\"",
            );
            WhenFull::Block
        }
        Some(other) => {
            errs.push(
                &s.key_path("when_full"),
                format!("must be \"block\" or \"drop_oldest\" (got {other:?})"),
            );
            WhenFull::Block
        }
    };
    let batch_max_events_given = s
        .table_peek("batch")
        .is_some_and(|b| b.contains_key("max_events"));
    let mut batch = read_batch(s, errs);
    let retry = read_retry(s, errs);
    let condition = s.string("condition", errs).map(|source| VrlSource {
        key: s.key_path("condition"),
        source,
    });
    let remap = s.string("remap", errs).map(|source| VrlSource {
        key: s.key_path("remap"),
        source,
    });
    let mut http = HttpSinkConfig::default();
    let kind = match s.req_string("type", errs).as_deref() {
        Some("file") => {
            for key in ["concurrency", "compression", "tls", "timeout"] {
                if s.get(key).is_some() {
                    errs.push(
                        &s.key_path(key),
                        "does not apply to a sink of type \"file\"",
                    );
                }
            }
            let path = if s.has("path") {
                s.path_value("path", base, errs)
            } else {
                errs.push(
                    &s.key_path("path"),
                    "is required for a sink of type \"file\"",
                );
                None
            };
            path.map(|path| SinkKind::File { path })
        }
        Some("splunk_hec") => {
            http = read_http(s, base, errs);
            read_splunk_hec(s, base, errs).map(SinkKind::SplunkHec)
        }
        Some("webhook") => {
            let compression_given = s.has("compression");
            http = read_http(s, base, errs);
            if !compression_given {
                // Webhook receivers verify the signature over the body they are handed and
                // rarely decode gzip requests: plain JSON unless asked otherwise.
                http.compression = Compression::None;
            }
            if !batch_max_events_given {
                batch.max_events = 1; // one event per request unless asked otherwise
            }
            read_webhook_sink(s, base, errs).map(SinkKind::Webhook)
        }
        Some("kafka") => {
            let bootstrap_servers = s.req_string("bootstrap_servers", errs);
            let topic = s.req_string("topic", errs);
            let librdkafka = read_librdkafka(s, errs);
            match (bootstrap_servers, topic) {
                (Some(bootstrap_servers), Some(topic)) => Some(SinkKind::Kafka(KafkaSinkConfig {
                    bootstrap_servers,
                    topic,
                    librdkafka,
                })),
                _ => None,
            }
        }
        Some("sentinel") => {
            http = read_http(s, base, errs);
            read_sentinel(s, base, errs).map(SinkKind::Sentinel)
        }
        Some("elasticsearch") => {
            http = read_http(s, base, errs);
            if batch.max_bytes >= ELASTIC_MAX_CONTENT_LENGTH {
                errs.push(
                    &format!("{}.max_bytes", s.key_path("batch")),
                    format!("must stay below Elasticsearch's http.max_content_length ({ELASTIC_MAX_CONTENT_LENGTH} bytes)"),
                );
            }
            read_elastic(s, base, errs).map(SinkKind::Elasticsearch)
        }
        Some(t) => {
            errs.push(
                &s.key_path("type"),
                format!(
                    "unknown sink type {t:?}; expected one of file, splunk_hec, elasticsearch, sentinel, webhook, kafka"
                ),
            );
            // Its keys belong to some other type; do not report them as unknown as well.
            s.mark_all_seen();
            None
        }
        None => None,
    };
    Some(SinkConfig {
        name: name.to_string(),
        tenants: sink_tenants,
        when_full,
        batch,
        retry,
        condition,
        remap,
        http,
        kind: kind?,
    })
}

/// `concurrency`, `compression`, `tls`, `timeout` of an HTTP sink.
fn read_http(s: &mut Obj, base: &Path, errs: &mut Errors) -> HttpSinkConfig {
    let mut http = HttpSinkConfig::default();
    match s.holds_integer("concurrency") {
        None => {}
        Some(true) => {
            if let Some(n) = s.int("concurrency", 1, 256, errs) {
                http.concurrency = Concurrency::Fixed(n);
            }
        }
        Some(false) => match s.string("concurrency", errs).as_deref() {
            None | Some("adaptive") => {}
            Some(other) => errs.push(
                &s.key_path("concurrency"),
                format!(
                    "must be \"adaptive\" or a number of requests from 1 to 256 (got {other:?})"
                ),
            ),
        },
    }
    if let Some(n) = s.int("max_concurrency", 1, 256, errs) {
        http.max_concurrency = n;
    }
    match s.string("compression", errs).as_deref() {
        None | Some("gzip") => {}
        Some("none") => http.compression = Compression::None,
        Some(other) => errs.push(
            &s.key_path("compression"),
            format!("must be \"gzip\" or \"none\" (got {other:?})"),
        ),
    }
    if let Some(mut t) = s.table("tls", errs) {
        if t.has("ca_file") {
            http.tls.ca_file = t.path_value("ca_file", base, errs);
            if let Some(p) = &http.tls.ca_file {
                if let Err(e) = std::fs::metadata(p) {
                    errs.push(
                        &t.key_path("ca_file"),
                        format!("cannot read {}: {e}", p.display()),
                    );
                }
            }
        }
        if let Some(v) = t.bool("verify", errs) {
            http.tls.verify = v;
        }
        t.finish(errs);
    }
    if let Some(d) = s.duration("timeout", millis(1)..=secs(3600), errs) {
        http.timeout = d;
    }
    http
}

fn read_url(s: &mut Obj, key: &str, errs: &mut Errors) -> Option<String> {
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

fn read_elastic(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<ElasticConfig> {
    let mut endpoints = Vec::new();
    if !s.has("endpoints") {
        errs.push(
            &s.key_path("endpoints"),
            "is required (a list of base URLs)",
        );
    }
    let path = s.key_path("endpoints");
    if let Some(list) = s.strings("endpoints", errs) {
        if list.is_empty() {
            errs.push(&path, "needs at least one URL");
        }
        for (i, url) in list.iter().enumerate() {
            match url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
            {
                Some(host) if !host.is_empty() && !host.starts_with('/') => {
                    endpoints.push(url.trim_end_matches('/').to_string())
                }
                _ => errs.push(
                    &format!("{path}[{i}]"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ),
            }
        }
    }
    let api_key = s.secret("api_key", base, errs);
    let username = s.string("username", errs);
    let password = s.secret("password", base, errs);
    let auth = match (api_key, username, password) {
        (Some(k), None, None) => ElasticAuth::ApiKey(k),
        (None, Some(username), Some(password)) => ElasticAuth::Basic { username, password },
        (None, None, None) => ElasticAuth::None,
        (Some(_), _, _) => {
            errs.push(
                &s.key_path("api_key"),
                "give either api_key or username/password, not both",
            );
            ElasticAuth::None
        }
        (None, Some(_), None) => {
            errs.push(
                &s.key_path("password"),
                "is required with username (or password_file)",
            );
            ElasticAuth::None
        }
        (None, None, Some(_)) => {
            errs.push(&s.key_path("username"), "is required with password");
            ElasticAuth::None
        }
    };
    let data_stream = s.string("data_stream", errs);
    let index = s.string("index", errs);
    let target = match (data_stream, index) {
        (Some(ds), None) => ElasticTarget::DataStream(ds),
        (None, Some(ix)) => ElasticTarget::Index(ix),
        (None, None) => ElasticTarget::DataStream("logs-thoth.events-default".into()),
        (Some(_), Some(_)) => {
            errs.push(
                &s.key_path("index"),
                "give either data_stream or index, not both",
            );
            ElasticTarget::DataStream(String::new())
        }
    };
    let (ElasticTarget::DataStream(ds) | ElasticTarget::Index(ds)) = &target;
    {
        if ds.is_empty()
            || ds
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \\/*?\"<>|,#".contains(c))
        {
            errs.push(
                &s.key_path(if matches!(target, ElasticTarget::Index(_)) { "index" } else { "data_stream" }),
                format!("{ds:?} is not a valid index or data stream name (lowercase, no spaces or \\/*?\"<>|,#)"),
            );
        }
    }
    if endpoints.is_empty() {
        return None;
    }
    Some(ElasticConfig {
        endpoints,
        auth,
        target,
    })
}

fn read_sentinel(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<SentinelConfig> {
    let endpoint = read_url(s, "endpoint", errs);
    let dcr_immutable_id = s.req_string("dcr_immutable_id", errs);
    if let Some(id) = &dcr_immutable_id {
        if !id.starts_with("dcr-") {
            errs.push(
                &s.key_path("dcr_immutable_id"),
                format!("{id:?} is not a DCR immutable id (they look like dcr-0123…)"),
            );
        }
    }
    let stream = s.req_string("stream", errs);
    if let Some(st) = &stream {
        if !st.starts_with("Custom-") && !st.starts_with("Microsoft-") {
            errs.push(
                &s.key_path("stream"),
                format!("{st:?} is not a stream name of the DCR (Custom-… or Microsoft-…)"),
            );
        }
    }
    let entra = read_entra_app(s, base, "https://monitor.azure.com//.default", errs);
    Some(SentinelConfig {
        endpoint: endpoint?,
        dcr_immutable_id: dcr_immutable_id?,
        stream: stream?,
        entra: entra?,
    })
}

fn read_splunk_hec(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<SplunkHecConfig> {
    let endpoint = read_url(s, "endpoint", errs);
    let token = s.secret("token", base, errs);
    if token.is_none() && !s.has("token") && !s.has("token_file") {
        errs.push(&s.key_path("token"), "is required (or token_file)");
    }
    let index = s.string("index", errs);
    let acknowledgements = s.bool("acknowledgements", errs).unwrap_or(false);
    let ack_timeout = s
        .duration("ack_timeout", secs(1)..=days(1), errs)
        .unwrap_or(Duration::from_secs(300));
    let ack_poll_interval = s
        .duration("ack_poll_interval", millis(10)..=secs(3600), errs)
        .unwrap_or(Duration::from_secs(10));
    Some(SplunkHecConfig {
        endpoint: endpoint?,
        token: token?,
        index,
        acknowledgements,
        ack_timeout,
        ack_poll_interval,
    })
}

fn read_batch(s: &mut Obj, errs: &mut Errors) -> BatchConfig {
    let mut batch = BatchConfig {
        max_events: 500,
        max_bytes: MIB,
        timeout: Duration::from_secs(1),
    };
    if let Some(mut b) = s.table("batch", errs) {
        if let Some(n) = b.int("max_events", 1, 100_000, errs) {
            batch.max_events = n;
        }
        if let Some(n) = b.size("max_bytes", 1024, 256 * MIB, errs) {
            batch.max_bytes = n;
        }
        if let Some(d) = b.duration("timeout", Duration::ZERO..=secs(3600), errs) {
            batch.timeout = d;
        }
        b.finish(errs);
    }
    batch
}

fn read_retry(s: &mut Obj, errs: &mut Errors) -> RetryConfig {
    let mut retry = RetryConfig {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(60),
        max_duration: Duration::from_secs(24 * 3600),
    };
    if let Some(mut r) = s.table("retry", errs) {
        if let Some(d) = r.duration("initial_backoff", millis(1)..=secs(3600), errs) {
            retry.initial_backoff = d;
        }
        if let Some(d) = r.duration("max_backoff", millis(1)..=days(1), errs) {
            retry.max_backoff = d;
        }
        if let Some(d) = r.duration("max_duration", secs(1)..=days(365), errs) {
            retry.max_duration = d;
        }
        if retry.initial_backoff > retry.max_backoff {
            errs.push(
                &r.key_path("initial_backoff"),
                "must not exceed max_backoff",
            );
        }
        r.finish(errs);
    }
    retry
}
