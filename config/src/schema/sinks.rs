//! `[sinks.NAME]`: every sink type, with batch, retry and HTTP settings.

use super::mdm::read_entra_app;
use super::sources::read_webhook_secrets;
use super::*;

/// Elasticsearch's default `http.max_content_length`: a bulk request must stay below it.
pub(super) const ELASTIC_MAX_CONTENT_LENGTH: u64 = 100 * MIB;

pub(super) fn read_webhook_sink(
    s: &mut Obj,
    base: &Path,
    errs: &mut Errors,
) -> Option<WebhookSinkConfig> {
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

pub(super) fn read_sinks(
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

pub(super) fn names_is_empty(sinks: &BTreeMap<String, SinkConfig>, errs: &Errors) -> bool {
    sinks.is_empty() && errs.0.iter().all(|e| !e.path.starts_with("sinks."))
}

pub(super) fn read_sink(
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
pub(super) fn read_http(s: &mut Obj, base: &Path, errs: &mut Errors) -> HttpSinkConfig {
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

pub(super) fn read_elastic(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<ElasticConfig> {
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

pub(super) fn read_sentinel(s: &mut Obj, base: &Path, errs: &mut Errors) -> Option<SentinelConfig> {
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

pub(super) fn read_splunk_hec(
    s: &mut Obj,
    base: &Path,
    errs: &mut Errors,
) -> Option<SplunkHecConfig> {
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

pub(super) fn read_batch(s: &mut Obj, errs: &mut Errors) -> BatchConfig {
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

pub(super) fn read_retry(s: &mut Obj, errs: &mut Errors) -> RetryConfig {
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
