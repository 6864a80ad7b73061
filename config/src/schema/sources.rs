//! `[[sources.webhooks]]` and `[[sources.kafka]]`.

use super::*;

pub(super) fn read_sources(
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
pub(super) fn read_webhook_secrets(
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
