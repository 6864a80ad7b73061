//! What a config reload may change: every key the parser reads falls under one rule here,
//! either applied live or only at restart (what the process bound or opened at start: the
//! listener and its limits, the data dir, the WAL, sources). A reload that changes a
//! restart-only key is refused with the key. A test fails when the parser reads a key no rule
//! covers, so a new key cannot be "reloaded" silently without taking effect.

use crate::Config;

/// How a reload treats the keys under a path.
#[derive(Clone, Copy)]
pub enum Reload {
    /// Swapped in by a reload.
    Live,
    /// Needs a restart; the function says whether two configs agree on the keys.
    Restart(fn(&Config, &Config) -> bool),
}

/// The rules, by key path prefix (the longest matching prefix applies).
pub const RULES: &[(&str, Reload)] = &[
    ("data_dir", Reload::Restart(|a, b| a.data_dir == b.data_dir)),
    ("tenants", Reload::Live),
    ("api.tokens", Reload::Live),
    (
        "api.listen",
        Reload::Restart(|a, b| a.api.listen == b.api.listen),
    ),
    (
        "api.max_body_bytes",
        Reload::Restart(|a, b| a.api.max_body_bytes == b.api.max_body_bytes),
    ),
    (
        "api.max_event_bytes",
        Reload::Restart(|a, b| a.api.max_event_bytes == b.api.max_event_bytes),
    ),
    (
        "api.max_depth",
        Reload::Restart(|a, b| a.api.max_depth == b.api.max_depth),
    ),
    (
        "api.max_members",
        Reload::Restart(|a, b| a.api.max_members == b.api.max_members),
    ),
    (
        "api.max_batch_events",
        Reload::Restart(|a, b| a.api.max_batch_events == b.api.max_batch_events),
    ),
    (
        "api.max_connections",
        Reload::Restart(|a, b| a.api.max_connections == b.api.max_connections),
    ),
    ("api.tls", Reload::Restart(|a, b| a.api.tls == b.api.tls)),
    ("wal", Reload::Restart(|a, b| a.wal == b.wal)),
    ("mdm", Reload::Live),
    (
        "mdm.max_push_bytes",
        Reload::Restart(|a, b| a.mdm.max_push_bytes == b.mdm.max_push_bytes),
    ),
    ("checkins", Reload::Restart(|a, b| a.checkins == b.checkins)),
    ("state", Reload::Restart(|a, b| a.state == b.state)),
    ("sinks", Reload::Live),
    (
        "sources.webhooks",
        Reload::Restart(|a, b| a.webhook_sources == b.webhook_sources),
    ),
    (
        "sources.kafka",
        Reload::Restart(|a, b| a.kafka_sources == b.kafka_sources),
    ),
    ("transform", Reload::Live),
    ("tests", Reload::Live),
];

/// The rule for a key path (`api.tokens[0].token`, `sinks.splunk.batch.max_events`).
pub fn rule_for(path: &str) -> Option<(&'static str, Reload)> {
    RULES
        .iter()
        .filter(|(prefix, _)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// The restart-only keys on which `running` and `new` differ.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    RULES
        .iter()
        .filter_map(|(key, rule)| match rule {
            Reload::Restart(same) if !same(running, new) => Some(*key),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every section, beside the examples.
    const EVERY_SECTION: &str = r#"
data_dir = "d"
[api]
listen = "127.0.0.1:0"
max_members = 100
[[api.tokens]]
tenant_id = "acme"
token = "t0123456789abcdef"
[api.tls]
cert_file = "c.pem"
key_file = "k.pem"
client_ca_file = "ca.pem"
[[api.tls.clients]]
name = "c"
dns_name = "c.example"
tenant_id = "acme"
[[tenants]]
id = "acme"
name = "Acme"
[wal]
max_bytes = "64MiB"
[checkins]
stale_after = "1h"
[mdm]
max_push_bytes = "1MiB"
[[mdm.providers]]
name = "p"
kind = "jamf"
tenant_id = "acme"
source = "push"
[[sources.webhooks]]
name = "w"
tenant_id = "acme"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[sources.kafka]]
name = "k"
bootstrap_servers = "localhost:9092"
topic = "t"
group_id = "g"
tenant_id = "acme"
[transform]
source = ". = ."
[sinks.f]
type = "file"
path = "out"
[[tests]]
name = "t"
[tests.input]
type = "checkin"
tenant_id = "acme"
"#;

    #[test]
    fn every_key_the_parser_reads_has_a_reload_rule() {
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        let mut configs: Vec<(String, String)> = std::fs::read_dir(examples)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        configs.push(("EVERY_SECTION".into(), EVERY_SECTION.into()));
        let dir = tempfile::tempdir().unwrap();
        let mut read = std::collections::BTreeSet::new();
        for (name, text) in &configs {
            crate::walker::record_requested_keys(true);
            let parsed = crate::schema::parse(text, dir.path());
            read.extend(crate::walker::record_requested_keys(false));
            if let Err(errors) = &parsed {
                // Examples point at files of their own; a key is still read when its value
                // fails, which is all this test needs.
                assert!(!errors.is_empty(), "{name}");
            }
        }
        assert!(read.len() > 60, "the parser's keys were recorded: {read:?}");
        for sections in [
            "sources.kafka",
            "sources.webhooks",
            "api.tls",
            "mdm.providers",
        ] {
            assert!(
                read.iter().any(|k| k.starts_with(sections)),
                "{sections} is exercised"
            );
        }
        // A section (`api`, `sources`) is covered by the rules of its keys.
        let section = |k: &str| RULES.iter().any(|(p, _)| p.starts_with(&format!("{k}.")));
        let missing: Vec<&String> = read
            .iter()
            .filter(|k| rule_for(k).is_none() && !section(k))
            .collect();
        assert!(
            missing.is_empty(),
            "keys without a reload rule in config/src/reload_rules.rs: {missing:?}"
        );
    }

    #[test]
    fn the_longest_prefix_decides() {
        assert!(matches!(
            rule_for("mdm.providers[0].file"),
            Some(("mdm", Reload::Live))
        ));
        assert!(matches!(
            rule_for("mdm.max_push_bytes"),
            Some(("mdm.max_push_bytes", Reload::Restart(_)))
        ));
        assert!(matches!(
            rule_for("api.tokens[2].token"),
            Some(("api.tokens", Reload::Live))
        ));
        assert!(
            rule_for("api.listener").is_none(),
            "prefixes end at a key boundary"
        );
        assert!(rule_for("unknown").is_none());
    }
}
