use std::path::Path;

use thoth_config::{Concurrency, Config, ConfigError, FsyncMode, MdmKind, SinkKind};

const GOOD: &str = r#"
data_dir = "data"

[api]
listen = "127.0.0.1:0"
max_body_bytes = "2MiB"
[[api.tokens]]
tenant_id = "acme"
token = "acme-token"
[[api.tokens]]
admin = true
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[wal]
max_bytes = "64MiB"
fsync = "always"

[[tenants]]
id = "acme"
name = "Acme Corp"
compliance_profile = "soc2"
[[tenants]]
id = "globex"

[mdm]
refresh_interval = "5m"
[[mdm.providers]]
name = "acme-jamf"
tenant_id = "acme"
kind = "jamf"
file = "mdm/acme-jamf.json"
endpoint_id_attribute = "Thoth Endpoint ID"
[[mdm.fleet_rules]]
tenant_id = "acme"
when = { department = "Engineering", os = "mac*" }
fleet = { id = "eng-macs", name = "Engineering Macs" }

[checkins]
stale_after = "15m"

[sinks.archive]
type = "file"
path = "/tmp/archive.ndjson"
tenants = ["acme"]
[sinks.archive.batch]
max_events = 100
timeout = "200ms"
"#;

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::from_toml(text, Path::new("/etc/thoth"))
}

fn paths(errs: &[ConfigError]) -> Vec<&str> {
    errs.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn a_full_config_parses_with_defaults_and_resolved_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.data_dir, Path::new("/etc/thoth/data"));
    assert_eq!(c.api.max_body_bytes, 2 << 20);
    assert_eq!(c.api.max_connections, 4096);
    assert_eq!(c.api.tokens.len(), 2);
    assert!(c.api.tokens[1].admin);
    assert_eq!(c.wal.fsync, FsyncMode::Always);
    assert_eq!(c.tenant("globex").unwrap().name, "globex");
    let p = &c.mdm.providers[0];
    assert_eq!(p.kind, MdmKind::Jamf);
    assert_eq!(p.file, Path::new("/etc/thoth/mdm/acme-jamf.json"));
    assert_eq!(c.mdm.fleet_rules[0].when.len(), 2);
    let sink = &c.sinks["archive"];
    assert_eq!(sink.batch.max_events, 100);
    assert_eq!(sink.batch.max_bytes, 1 << 20);
    assert!(
        matches!(&sink.kind, SinkKind::File { path } if path == Path::new("/tmp/archive.ndjson"))
    );
    // Secrets never show in Debug output.
    assert!(!format!("{c:?}").contains("acme-token"));
}

#[test]
fn every_mistake_is_reported_with_its_key_path() {
    let bad = GOOD
        .replace("max_events = 100", "max_events = 0")
        .replace("stale_after = \"15m\"", "stale_after = \"15 minutes\"")
        .replace(
            "compliance_profile = \"soc2\"",
            "compliance_profile = \"soc2\"\ncolour = \"red\"",
        );
    let errs = parse(&bad).unwrap_err();
    assert_eq!(
        paths(&errs),
        vec![
            "tenants[0].colour",
            "checkins.stale_after",
            "sinks.archive.batch.max_events"
        ],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("unknown key"));
    assert!(errs[1].message.contains("unknown unit"));
    assert!(errs[2].message.contains("between 1 and 100000"));
}

#[test]
fn references_and_types_are_checked() {
    let bad = GOOD
        .replace("tenants = [\"acme\"]", "tenants = [\"initech\"]")
        .replace("kind = \"jamf\"", "kind = \"mobileiron\"")
        .replace("listen = \"127.0.0.1:0\"", "listen = 8686")
        .replace(
            "tenant_id = \"acme\"\ntoken = \"acme-token\"",
            "token = \"x\"",
        );
    let errs = parse(&bad).unwrap_err();
    let p = paths(&errs);
    assert!(p.contains(&"sinks.archive.tenants[0]"), "{errs:#?}");
    assert!(p.contains(&"mdm.providers[0].kind"), "{errs:#?}");
    assert!(p.contains(&"api.listen"), "{errs:#?}");
    assert!(p.contains(&"api.tokens[0]"), "{errs:#?}");
}

#[test]
fn later_features_are_refused_not_ignored() {
    let more = GOOD.replace(
        "tenants = [\"acme\"]",
        "tenants = [\"acme\"]\nwhen_full = \"drop_oldest\"",
    );
    let errs = parse(&more).unwrap_err();
    assert_eq!(paths(&errs), vec!["sinks.archive.when_full"]);
    assert!(errs[0].message.contains("not supported yet"), "{errs:?}");
}

#[test]
fn kafka_sources_and_sinks_keep_passthrough_properties_and_refuse_reserved_ones() {
    let more = format!(
        "{GOOD}\n[[sources.kafka]]\nname = \"fleet\"\nbootstrap_servers = \"k:9092\"\ntopics = [\"thoth.decisions\"]\ngroup_id = \"thoth-gateway\"\n[sources.kafka.librdkafka]\n\"security.protocol\" = \"sasl_ssl\"\n\"session.timeout.ms\" = 6000\n[sinks.bus]\ntype = \"kafka\"\nbootstrap_servers = \"k:9092\"\ntopic = \"thoth.enriched\"\n"
    );
    let c = parse(&more).unwrap();
    assert_eq!(
        c.kafka_sources[0].librdkafka,
        vec![
            ("security.protocol".to_string(), "sasl_ssl".to_string()),
            ("session.timeout.ms".to_string(), "6000".to_string()),
        ]
    );
    let bad = more.replace(
        "\"session.timeout.ms\" = 6000",
        "\"enable.auto.commit\" = \"false\"",
    );
    assert_eq!(
        paths(&parse(&bad).unwrap_err()),
        vec!["sources.kafka[0].librdkafka.\"enable.auto.commit\""]
    );
    // `"${ENV}"` values come from the environment (a SASL password is not a literal).
    std::env::set_var("THOTH_TEST_KAFKA_PASSWORD", "s3cret");
    let env = more.replace(
        "\"session.timeout.ms\" = 6000",
        "\"sasl.password\" = \"${THOTH_TEST_KAFKA_PASSWORD}\"",
    );
    assert!(parse(&env).unwrap().kafka_sources[0]
        .librdkafka
        .contains(&("sasl.password".to_string(), "s3cret".to_string())));
    let unset = env.replace("THOTH_TEST_KAFKA_PASSWORD", "THOTH_TEST_KAFKA_UNSET");
    let errs = parse(&unset).unwrap_err();
    assert_eq!(
        paths(&errs),
        vec!["sources.kafka[0].librdkafka.\"sasl.password\""]
    );
    assert!(errs[0]
        .message
        .contains("THOTH_TEST_KAFKA_UNSET is not set"));
}

#[test]
fn vrl_sources_and_tests_are_kept_with_their_key_paths() {
    let more = format!(
        "{GOOD}\n[transform]\nsource = '.a = 1'\n[[tests]]\nname = \"t\"\ninput = {{ type = \"alert\", tenant_id = \"acme\" }}\nexpect_sinks = [\"archive\"]\nexpect = 'assert!(true)'\n"
    )
    .replace(
        "type = \"file\"\npath = \"/tmp/archive.ndjson\"",
        "type = \"file\"\npath = \"/tmp/archive.ndjson\"\ncondition = '.risk == \"high\"'",
    );
    let c = parse(&more).unwrap();
    assert_eq!(c.transform.as_ref().unwrap().key, "transform.source");
    assert_eq!(
        c.sinks["archive"].condition.as_ref().unwrap().key,
        "sinks.archive.condition"
    );
    assert_eq!(c.tests[0].input["tenant_id"], "acme");
    assert_eq!(c.tests[0].expect.as_ref().unwrap().key, "tests[0].expect");
    let bad = more.replace("expect_sinks = [\"archive\"]", "expect_sinks = [\"nope\"]");
    assert_eq!(
        paths(&parse(&bad).unwrap_err()),
        vec!["tests[0].expect_sinks[0]"]
    );
}

#[test]
fn secrets_come_from_files_and_env_and_never_show_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "file-token\n").unwrap();
    std::env::set_var("THOTH_CFG_TEST_TOKEN", "env-token");
    let text = GOOD.replace(
        "token = \"acme-token\"",
        "token_file = \"tok\"\n[[api.tokens]]\ntenant_id = \"globex\"\ntoken = \"${THOTH_CFG_TEST_TOKEN}\"",
    );
    let c = Config::from_toml(&text, dir.path()).unwrap();
    assert_eq!(c.api.tokens.len(), 3);

    let text = GOOD.replace(
        "token = \"acme-token\"",
        "token = \"${THOTH_CFG_TEST_UNSET}\"\ntoken_sha256 = \"zz\"",
    );
    let errs = Config::from_toml(&text, dir.path()).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.message.contains("THOTH_CFG_TEST_UNSET is not set")),
        "{errs:#?}"
    );
    let text = GOOD.replace("token = \"acme-token\"", "token_file = \"missing\"");
    let errs = Config::from_toml(&text, dir.path()).unwrap_err();
    assert_eq!(paths(&errs), vec!["api.tokens[0].token_file"]);
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let errs = parse("data_dir = \n[api").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("line 2, column 5"), "{errs:?}");
}

#[test]
fn http_sink_concurrency_is_adaptive_by_default_or_a_fixed_number() {
    let sink = |extra: &str| {
        format!(
            "{GOOD}\n[sinks.splunk]\ntype = \"splunk_hec\"\nendpoint = \"https://splunk:8088\"\ntoken = \"t\"\n{extra}"
        )
    };
    let c = parse(&sink("")).unwrap();
    let http = &c.sinks["splunk"].http;
    assert_eq!(http.concurrency, Concurrency::Adaptive);
    assert_eq!(http.most_in_flight(), 16);
    let c = parse(&sink("concurrency = \"adaptive\"\nmax_concurrency = 40")).unwrap();
    assert_eq!(c.sinks["splunk"].http.most_in_flight(), 40);
    let c = parse(&sink("concurrency = 3")).unwrap();
    assert_eq!(c.sinks["splunk"].http.concurrency, Concurrency::Fixed(3));
    assert_eq!(c.sinks["splunk"].http.most_in_flight(), 3);
    let errs = parse(&sink("concurrency = \"fast\"\nmax_concurrency = 0")).unwrap_err();
    assert_eq!(
        paths(&errs),
        ["sinks.splunk.concurrency", "sinks.splunk.max_concurrency"]
    );
    assert!(
        errs[0].message.contains("\"adaptive\" or a number"),
        "{}",
        errs[0].message
    );
}

#[test]
fn hardening_limits_have_defaults_and_are_range_checked() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.api.max_members, 10_000);
    assert_eq!(c.mdm.max_push_bytes, 256 << 20);
    assert_eq!(c.checkins.max_unknown_endpoints, 100_000);
    let set = GOOD
        .replace(
            "max_body_bytes = \"2MiB\"",
            "max_body_bytes = \"2MiB\"\nmax_members = 500",
        )
        .replace(
            "refresh_interval = \"5m\"",
            "refresh_interval = \"5m\"\nmax_push_bytes = \"1GiB\"",
        )
        .replace(
            "stale_after = \"15m\"",
            "stale_after = \"15m\"\nmax_unknown_endpoints = 10",
        );
    let c = parse(&set).unwrap();
    assert_eq!(
        (
            c.api.max_members,
            c.mdm.max_push_bytes,
            c.checkins.max_unknown_endpoints
        ),
        (500, 1 << 30, 10)
    );
    let bad = GOOD.replace(
        "max_body_bytes = \"2MiB\"",
        "max_body_bytes = \"2MiB\"\nmax_members = 0",
    );
    assert_eq!(paths(&parse(&bad).unwrap_err()), ["api.max_members"]);
}

#[test]
fn every_duration_is_range_checked() {
    // A zero interval would spin or panic a timer; a century would overflow a deadline.
    for (from, to, key) in [
        (
            "refresh_interval = \"5m\"",
            "refresh_interval = \"0s\"",
            "mdm.refresh_interval",
        ),
        (
            "stale_after = \"15m\"",
            "stale_after = \"0s\"",
            "checkins.stale_after",
        ),
        (
            "timeout = \"200ms\"",
            "timeout = \"36500d\"",
            "sinks.archive.batch.timeout",
        ),
        (
            "timeout = \"200ms\"",
            "timeout = \"200ms\"\n[sinks.archive.retry]\nmax_duration = \"18446744073709551615s\"",
            "sinks.archive.retry.max_duration",
        ),
    ] {
        let errs = parse(&GOOD.replace(from, to)).unwrap_err();
        assert_eq!(paths(&errs), [key], "{errs:#?}");
        assert!(errs[0].message.starts_with("must be between"), "{errs:#?}");
    }
}

#[test]
fn a_wal_must_hold_at_least_four_segments() {
    let ok = GOOD.replace(
        "fsync = \"always\"",
        "fsync = \"always\"\nsegment_bytes = \"16MiB\"",
    );
    assert_eq!(parse(&ok).unwrap().wal.segment_bytes, Some(16 << 20));
    for segment in ["17MiB", "64MiB", "1GiB"] {
        let bad = GOOD.replace(
            "fsync = \"always\"",
            &format!("fsync = \"always\"\nsegment_bytes = \"{segment}\""),
        );
        let errs = parse(&bad).unwrap_err();
        assert_eq!(paths(&errs), ["wal.segment_bytes"], "{errs:#?}");
        assert!(errs[0].message.contains("at least 4 segments"), "{errs:#?}");
    }
}

#[test]
fn empty_secrets_are_refused_and_short_tokens_warned_about() {
    std::env::set_var("THOTH_CONFIG_TEST_EMPTY_TOKEN", "");
    let bad = GOOD.replace(
        "token = \"acme-token\"",
        "token = \"${THOTH_CONFIG_TEST_EMPTY_TOKEN}\"",
    );
    let errs = parse(&bad).unwrap_err();
    assert_eq!(paths(&errs), ["api.tokens[0].token"]);
    assert!(errs[0].message.contains("is empty"), "{errs:#?}");
    assert_eq!(
        paths(&parse(&GOOD.replace("token = \"acme-token\"", "token = \"\"")).unwrap_err()),
        ["api.tokens[0].token"]
    );

    let c = parse(GOOD).unwrap();
    assert_eq!(paths(&c.warnings), ["api.tokens[0].token"]);
    assert!(c.warnings[0].message.contains("shorter than 16 bytes"));
    assert!(
        !c.warnings[0].message.contains("acme-token"),
        "never the secret"
    );
    let long = GOOD.replace(
        "token = \"acme-token\"",
        "token = \"acme-token-0123456789\"",
    );
    assert!(parse(&long).unwrap().warnings.is_empty());
}

#[test]
fn client_certificate_entries_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let tls = |clients: &str| {
        format!(
            "{GOOD}\n[api.tls]\ncert_file = \"{d}/cert.pem\"\nkey_file = \"{d}/key.pem\"\nclient_ca_file = \"{d}/ca.pem\"\n{clients}",
            d = dir.path().display()
        )
    };
    // [api.tls] must follow [api]'s keys; the GOOD text ends with sinks, so move it up.
    let place = |text: String| {
        let (head, tls) = text.split_at(text.find("\n[api.tls]").unwrap());
        head.replacen("[wal]", &format!("{tls}\n[wal]"), 1)
    };
    let ok = place(tls(
        "[[api.tls.clients]]\ndns_name = \"a.acme.com\"\ntenant_id = \"acme\"\n[[api.tls.clients]]\ndns_name = \"b.acme.com\"\ntenant_id = \"globex\"\n",
    ));
    assert!(parse(&ok).is_ok(), "{:#?}", parse(&ok).unwrap_err());
    let wildcard = place(tls(
        "[[api.tls.clients]]\ndns_name = \"*.acme.com\"\ntenant_id = \"acme\"\n",
    ));
    let errs = parse(&wildcard).unwrap_err();
    assert_eq!(paths(&errs), ["api.tls.clients[0].dns_name"], "{errs:#?}");
    assert!(errs[0].message.contains("wildcards are not allowed"));
    let twice = place(tls(
        "[[api.tls.clients]]\ndns_name = \"a.acme.com\"\ntenant_id = \"acme\"\n[[api.tls.clients]]\ndns_name = \"A.acme.com\"\ntenant_id = \"globex\"\n",
    ));
    assert_eq!(
        paths(&parse(&twice).unwrap_err()),
        ["api.tls.clients[1].dns_name"]
    );
}
