//! The JSON Schemas and the OpenAPI document of `docs/`, as validators: end-to-end tests check
//! what the gateway really takes and produces against what the docs promise.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::{Draft, Resource, Validator};
use serde_json::Value;

fn docs(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(path)
}

fn json_file(path: &str) -> Value {
    let p = docs(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `file://` URI of a file under docs/.
pub fn doc_uri(path: &str) -> String {
    format!("file://{}", docs(path).display())
}

/// The OpenAPI document as JSON.
pub fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let p = docs("openapi.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

/// A validator of `schema`, with the docs' schemas and the OpenAPI document resolvable by
/// their `file://` URIs and their `$id`s; formats (`date-time`) are checked.
pub fn validator(schema: &Value) -> Validator {
    let mut options = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_resource(
            doc_uri("openapi.yaml"),
            Resource::from_contents(openapi().clone()),
        );
    for name in ["event", "enriched", "config"] {
        let file = format!("schema/{name}.schema.json");
        let schema = json_file(&file);
        options = options
            .with_resource(doc_uri(&file), Resource::from_contents(schema.clone()))
            .with_resource(
                format!("urn:thoth-gateway:schema:{name}"),
                Resource::from_contents(schema),
            );
    }
    options
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema}"))
}

fn by_id(name: &str) -> Validator {
    validator(&serde_json::json!({"$ref": format!("urn:thoth-gateway:schema:{name}")}))
}

/// Every error of `value` against `v`, one per line (empty when valid).
pub fn errors(v: &Validator, value: &Value) -> String {
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panics with every error unless `event` is an input event as `docs/schema/event.schema.json`
/// describes it.
pub fn assert_input_event(event: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    let e = errors(V.get_or_init(|| by_id("event")), event);
    assert!(
        e.is_empty(),
        "not an input event per docs/schema/event.schema.json:\n{e}\n{event}"
    );
}

/// Panics with every error unless `event` is an enriched event as
/// `docs/schema/enriched.schema.json` describes it.
pub fn assert_enriched_event(event: &Value) {
    static V: OnceLock<Validator> = OnceLock::new();
    let e = errors(V.get_or_init(|| by_id("enriched")), event);
    assert!(
        e.is_empty(),
        "not an enriched event per docs/schema/enriched.schema.json:\n{e}\n{event}"
    );
}

/// Every error of `config` (a TOML text) against `docs/schema/config.schema.json`, one per
/// line (empty when it satisfies the schema).
pub fn config_errors(config: &str) -> String {
    static V: OnceLock<Validator> = OnceLock::new();
    let table: toml::Table = match config.parse() {
        Ok(t) => t,
        Err(e) => return format!("not TOML: {e}"),
    };
    let value = serde_json::to_value(table).unwrap();
    errors(V.get_or_init(|| by_id("config")), &value)
}

/// Panics unless `config` (a TOML text) satisfies `docs/schema/config.schema.json`.
pub fn assert_config(name: &str, config: &str) {
    let e = config_errors(config);
    assert!(
        e.is_empty(),
        "{name} does not satisfy docs/schema/config.schema.json:\n{e}"
    );
}
