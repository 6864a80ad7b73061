//! `[api]`: the listener, its limits, tokens and TLS.

use super::*;

pub(super) fn read_api(
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
pub(super) fn read_ingest_tls(
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
pub(super) const MIN_TOKEN_BYTES: usize = 16;

pub(super) fn read_token(
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
