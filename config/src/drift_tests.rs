//! The config's three descriptions cannot drift apart: the keys the parser reads, the keys of
//! the JSON Schema that `thoth-gateway config schema` prints, and the keys
//! `docs/configuration.md` documents must be the same set.

use std::collections::BTreeSet;

use serde_json::Value;

/// Tables whose keys are the user's own (librdkafka properties, header names, fleet-rule
/// fields, a test's event): the table itself is the documented key.
const FREE_MAPS: [&str; 5] = ["librdkafka", "headers", "when", "input", "expect_remap"];

/// Every key of every section at least once, both forms of each secret included. It need not
/// be valid: the parser reads every key it is given, valid or not, and that is what is
/// recorded.
const EVERY_KEY: &str = r#"
data_dir = "d"
[api]
listen = "127.0.0.1:0"
max_body_bytes = "1MiB"
max_event_bytes = "1MiB"
max_depth = 8
max_members = 100
max_batch_events = 100
max_connections = 10
[[api.tokens]]
tenant_id = "acme"
admin = false
token = "t"
token_file = "f"
token_sha256 = "00"
max_events_per_second = 5
[api.tls]
cert_file = "c"
key_file = "k"
client_ca_file = "ca"
client_auth = "optional"
[[api.tls.clients]]
dns_name = "a"
sha256 = "00"
tenant_id = "acme"
admin = false
max_events_per_second = 5
[wal]
max_bytes = "64MiB"
fsync = "interval"
fsync_interval = "1s"
segment_bytes = "4MiB"
[[tenants]]
id = "acme"
name = "Acme"
compliance_profile = "soc2"
[mdm]
refresh_interval = "5m"
max_push_bytes = "1MiB"
[[mdm.providers]]
name = "j"
tenant_id = "acme"
kind = "jamf"
url = "https://jamf"
endpoint_id_attribute = "A"
client_id = "c"
client_secret = "s"
client_secret_file = "f"
inventory_path = "/p"
page_size = 100
[[mdm.providers]]
name = "jt"
tenant_id = "acme"
kind = "jamf"
url = "https://jamf"
token = "t"
token_file = "f"
[[mdm.providers]]
name = "jf"
tenant_id = "acme"
kind = "jamf"
file = "f"
[[mdm.providers]]
name = "i"
tenant_id = "acme"
kind = "intune"
url = "https://graph"
azure_tenant_id = "a"
client_id = "c"
client_secret = "s"
client_secret_file = "f"
authority = "https://login"
scope = "s"
[[mdm.fleet_rules]]
tenant_id = "acme"
when = { os = "macOS" }
fleet = { id = "f", name = "F" }
[checkins]
stale_after = "15m"
max_unknown_endpoints = 10
[state]
backend = "redis"
url = "redis://r"
url_file = "f"
key_prefix = "p:"
replica_id = "r"
expected_replicas = 2
[transform]
source = ". = ."
[[sources.kafka]]
name = "k"
bootstrap_servers = "b"
topics = ["t"]
group_id = "g"
tenant_id = "acme"
librdkafka = { "client.id" = "x" }
[[sources.webhooks]]
name = "w"
tenant_id = "acme"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
secrets_file = "f"
tolerance = "5m"
[sinks.f]
type = "file"
path = "p"
tenants = ["acme"]
condition = "true"
remap = ". = ."
when_full = "block"
batch = { max_events = 1, max_bytes = "1MiB", timeout = "1s" }
retry = { initial_backoff = "1s", max_backoff = "1m", max_duration = "1h" }
[sinks.h]
type = "splunk_hec"
endpoint = "https://h"
token = "t"
token_file = "f"
index = "i"
acknowledgements = true
ack_timeout = "5m"
ack_poll_interval = "10s"
concurrency = "adaptive"
max_concurrency = 4
compression = "gzip"
tls = { ca_file = "c", verify = true }
timeout = "30s"
[sinks.e]
type = "elasticsearch"
endpoints = ["https://e"]
api_key = "k"
api_key_file = "f"
username = "u"
password = "p"
password_file = "f"
data_stream = "logs-thoth.events-default"
index = "i"
[sinks.s]
type = "sentinel"
endpoint = "https://dce"
dcr_immutable_id = "dcr-1"
stream = "Custom-ThothEvents_CL"
azure_tenant_id = "a"
client_id = "c"
client_secret = "s"
client_secret_file = "f"
authority = "https://login"
scope = "s"
[sinks.w]
type = "webhook"
url = "https://w"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
secret_file = "f"
headers = { "X-A" = "b" }
hub_signature_secret = "s"
hub_signature_secret_file = "f"
[sinks.k]
type = "kafka"
bootstrap_servers = "b"
topic = "t"
librdkafka = { "acks" = "all" }
[[tests]]
name = "t"
input = { type = "checkin", tenant_id = "acme", endpoint_id = "e" }
expect_sinks = ["f"]
expect = "true"
expect_remap = { w = "true" }
"#;

/// `a.b[3].c` → `a.b[].c`, `sinks.NAME.x` → `sinks.*.x`, and a free map's members → the map.
fn normalize(path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for (i, part) in path.split('.').enumerate() {
        let part = match part.find('[') {
            Some(at) => format!("{}[]", &part[..at]),
            None => part.to_string(),
        };
        let part = if i == 1 && out.first().is_some_and(|s| s == "sinks") {
            "*".to_string()
        } else {
            part
        };
        let free = FREE_MAPS
            .iter()
            .any(|m| part == *m || part == format!("{m}[]"));
        out.push(part);
        if free {
            break;
        }
    }
    out.join(".")
}

/// The leaves of a key set: keys no other key is below.
fn leaves(keys: BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| {
            !keys
                .iter()
                .any(|o| o.starts_with(&format!("{k}.")) || o.starts_with(&format!("{k}[].")))
        })
        .cloned()
        .collect()
}

/// The keys the parser asks for across the examples and [`EVERY_KEY`].
fn parser_keys() -> BTreeSet<String> {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut configs: Vec<String> = std::fs::read_dir(examples)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(&p).unwrap())
        .collect();
    configs.push(EVERY_KEY.to_string());
    let dir = tempfile::tempdir().unwrap();
    let mut read = BTreeSet::new();
    for text in &configs {
        crate::walker::record_requested_keys(true);
        let _ = crate::schema::parse(text, dir.path());
        read.extend(crate::walker::record_requested_keys(false));
    }
    leaves(read.iter().map(|k| normalize(k)).collect())
}

fn schema() -> Value {
    serde_json::from_str(crate::JSON_SCHEMA).expect("the config schema is JSON")
}

/// The keys a schema describes: its `properties` (through `$ref`, `allOf` and `if`/`then`),
/// array items as `[]`, a map's values (`additionalProperties` with properties) as `*`.
fn schema_keys(root: &Value) -> BTreeSet<String> {
    fn walk(root: &Value, node: &Value, path: &str, out: &mut BTreeSet<String>) {
        let node = resolve(root, node);
        let mut leaf = true;
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(root, v, &p, out);
            }
            leaf = false;
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for sub in node
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let before = out.len();
                walk_inner(root, sub, path, out);
                leaf &= out.len() == before;
            }
        }
        for key in ["then", "else"] {
            if let Some(sub) = node.get(key) {
                walk_inner(root, sub, path, out);
                leaf = false;
            }
        }
        if let Some(items) = node.get("items") {
            if has_properties(root, items) {
                walk(root, items, &format!("{path}[]"), out);
                leaf = false;
            }
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            if has_properties(root, values) {
                walk(root, values, &format!("{path}.*"), out);
                leaf = false;
            }
        }
        if leaf && !path.is_empty() {
            out.insert(path.to_string());
        }
    }
    /// A subschema's keys at the same level (no leaf of its own).
    fn walk_inner(root: &Value, node: &Value, path: &str, out: &mut BTreeSet<String>) {
        let mut inner = BTreeSet::new();
        walk(root, node, path, &mut inner);
        inner.remove(path);
        out.extend(inner);
    }
    fn has_properties(root: &Value, node: &Value) -> bool {
        let node = resolve(root, node);
        node.get("properties").is_some()
            || ["allOf", "anyOf", "oneOf"]
                .iter()
                .any(|k| node.get(k).is_some())
    }
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.strip_prefix('#').expect("local $ref");
                resolve(root, root.pointer(pointer).expect("$ref resolves"))
            }
            None => node,
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, "", &mut out);
    out
}

/// The keys `docs/configuration.md` documents: the first cell of every table whose header
/// starts with `key`, below the section its heading names (`[api]`, `[[api.tokens]]`,
/// `[sinks.NAME]`); a heading without a section keeps the enclosing one.
fn documented_keys(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut sections: Vec<(usize, String)> = Vec::new();
    let mut in_key_table = false;
    for line in markdown.lines() {
        if let Some(level) = line
            .find(|c| c != '#')
            .filter(|&n| n > 0 && line.starts_with('#'))
        {
            sections.retain(|(l, _)| *l < level);
            let heading = &line[level..];
            let section = heading
                .split('`')
                .nth(1)
                .filter(|s| s.starts_with('['))
                .map(|s| {
                    let array = s.starts_with("[[");
                    let name = s
                        .trim_matches(|c| c == '[' || c == ']')
                        .replace(".NAME", ".*");
                    if array {
                        format!("{name}[]")
                    } else {
                        name
                    }
                });
            let inherited = sections.last().map(|(_, s)| s.clone()).unwrap_or_default();
            let top = heading.trim() == "Top level";
            sections.push((
                level,
                if top {
                    String::new()
                } else {
                    section.unwrap_or(inherited)
                },
            ));
            in_key_table = false;
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            in_key_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
            continue;
        }
        if !in_key_table || first.starts_with("---") {
            continue;
        }
        let prefix = sections.last().map(|(_, s)| s.clone()).unwrap_or_default();
        let mut previous = String::new();
        for (i, token) in first.split('`').enumerate() {
            if i % 2 == 0 || token.is_empty() {
                continue;
            }
            let name = token.split(" =").next().unwrap().trim();
            let name = match name.strip_prefix('_') {
                Some(suffix) => format!("{previous}_{suffix}"),
                None => name.to_string(),
            };
            previous = name.clone();
            out.insert(if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            });
        }
    }
    out
}

fn docs() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("docs/configuration.md")
}

fn difference(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

/// Fails naming the keys of each set that the other lacks.
fn assert_same(a: (&BTreeSet<String>, &str), b: (&BTreeSet<String>, &str)) {
    assert_eq!(
        difference(a.0, b.0),
        Vec::<String>::new(),
        "{}, missing from: {}",
        a.1,
        b.1
    );
    assert_eq!(
        difference(b.0, a.0),
        Vec::<String>::new(),
        "{}, missing from: {}",
        b.1,
        a.1
    );
}

#[test]
fn the_schema_describes_exactly_the_keys_the_parser_reads() {
    let parser = parser_keys();
    let schema = schema_keys(&schema());
    assert!(
        parser.len() > 120,
        "the parser's keys were recorded: {parser:?}"
    );
    assert_same(
        (&parser, "read by the parser"),
        (&schema, "in docs/schema/config.schema.json"),
    );
}

#[test]
fn the_docs_document_exactly_the_keys_of_the_schema() {
    let documented = documented_keys(&docs());
    let schema = schema_keys(&schema());
    assert_same(
        (&schema, "accepted (the schema)"),
        (&documented, "documented in docs/configuration.md"),
    );
}

#[test]
fn the_drift_checks_see_a_missing_key() {
    let documented = documented_keys("## `[api]`\n\n| key | |\n| --- | --- |\n| `listen` | x |\n| `token` / `token_file` | |\n| `hub_signature_secret` / `_file` | |\n\n### `[[api.tokens]]`\n\n| key | |\n| --- | --- |\n| `admin = true` | |\n\n## Top level\n\n| key | |\n| --- | --- |\n| `data_dir` | |\n");
    let want: BTreeSet<String> = [
        "api.listen",
        "api.token",
        "api.token_file",
        "api.hub_signature_secret",
        "api.hub_signature_secret_file",
        "api.tokens[].admin",
        "data_dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(documented, want);
    assert_eq!(normalize("sinks.soar.headers.X-A"), "sinks.*.headers");
    assert_eq!(normalize("api.tokens[12].token"), "api.tokens[].token");
}
