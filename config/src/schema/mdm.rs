//! `[mdm]`: providers (files, pushes, Jamf Pro and Intune APIs) and fleet rules.

use super::*;

pub(super) fn read_mdm(
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

pub(super) fn read_provider(
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

pub(super) fn read_jamf_api(p: &mut Obj, base: &Path, errs: &mut Errors) -> Option<JamfApi> {
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

pub(super) fn read_intune_api(p: &mut Obj, base: &Path, errs: &mut Errors) -> Option<IntuneApi> {
    let url = read_url(p, "url", errs);
    let entra = read_entra_app(p, base, "https://graph.microsoft.com/.default", errs);
    Some(IntuneApi {
        url: url?,
        entra: entra?,
    })
}

/// The Entra ID app settings shared by Intune and Sentinel; `default_scope` is the
/// audience of the API signed in to.
pub(super) fn read_entra_app(
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

pub(super) fn read_fleet_rule(
    r: &mut Obj,
    tenants: &HashSet<&str>,
    errs: &mut Errors,
) -> Option<FleetRule> {
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
