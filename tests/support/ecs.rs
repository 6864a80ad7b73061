//! Elastic's own ECS field definitions (a pinned, trimmed copy of elastic/ecs
//! `generated/ecs/ecs_flat.yml` in `tests/data/`), and a check of a document against them:
//! every field is an ECS field of the right type, every value is an allowed one, every
//! `event.type` is one ECS expects with the document's `event.category`, and the fields ECS
//! requires are there. The custom namespace `thoth` is not ECS and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The custom top-level namespace the sink puts the whole enriched event under.
const CUSTOM_NAMESPACE: &str = "thoth";

#[derive(Debug, Deserialize)]
pub struct Field {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub normalize: Vec<String>,
    #[serde(default)]
    pub required: bool,
    pub object_type: Option<String>,
    #[serde(default)]
    pub allowed_values: Vec<AllowedValue>,
}

#[derive(Debug, Deserialize)]
pub struct AllowedValue {
    pub name: String,
    #[serde(default)]
    pub expected_event_types: Vec<String>,
}

/// The ECS version of the pinned field list.
pub const PINNED_VERSION: &str = "9.4.0";

/// Every ECS field by its flat name.
pub fn fields() -> &'static BTreeMap<String, Field> {
    static FIELDS: OnceLock<BTreeMap<String, Field>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ecs_flat-9.4.0.yml");
        let text = std::fs::read_to_string(path).unwrap();
        serde_yaml_ng::from_str(&text).unwrap()
    })
}

/// Everything in `doc` that breaks the ECS definitions; empty when it conforms.
pub fn violations(doc: &Value) -> Vec<String> {
    let defs = fields();
    let mut found = Vec::new();
    let mut leaves = Vec::new();
    collect_leaves(doc, String::new(), defs, &mut leaves);
    for (path, value) in &leaves {
        match defs.get(path.as_str()) {
            Some(field) => check_value(path, field, value, &mut found),
            None => match object_parent(path, defs) {
                Some((parent, field)) => {
                    check_object_member(path, parent, field, value, &mut found)
                }
                None => found.push(format!("{path}: not an ECS field")),
            },
        }
    }
    for name in defs
        .iter()
        .filter(|(_, f)| f.required)
        .map(|(name, _)| name)
    {
        if !leaves.iter().any(|(p, _)| p == name) {
            found.push(format!("{name}: required by ECS on every event, missing"));
        }
    }
    check_category_types(doc, defs, &mut found);
    found
}

/// `(flat path, value)` of every leaf outside the custom namespace; an ECS `object` field
/// (`labels`) is descended into, an array is a leaf.
fn collect_leaves<'a>(
    v: &'a Value,
    prefix: String,
    defs: &BTreeMap<String, Field>,
    out: &mut Vec<(String, &'a Value)>,
) {
    match v.as_object() {
        Some(map) if defs.get(&prefix).is_none_or(|f| f.kind == "object") => {
            for (k, child) in map {
                if prefix.is_empty() && k == CUSTOM_NAMESPACE {
                    continue;
                }
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_leaves(child, path, defs, out);
            }
        }
        _ => out.push((prefix, v)),
    }
}

/// The nearest ECS `object` field `path` is a member of (`labels.fleet_id` → `labels`).
fn object_parent<'d>(
    path: &str,
    defs: &'d BTreeMap<String, Field>,
) -> Option<(&'d str, &'d Field)> {
    let mut end = path.len();
    while let Some(dot) = path[..end].rfind('.') {
        if let Some((name, field)) = defs.get_key_value(&path[..dot]) {
            return (field.kind == "object").then_some((name.as_str(), field));
        }
        end = dot;
    }
    None
}

fn check_object_member(
    path: &str,
    parent: &str,
    field: &Field,
    value: &Value,
    found: &mut Vec<String>,
) {
    let member_type = field.object_type.as_deref().unwrap_or("keyword");
    if !value_has_type(value, member_type) {
        found.push(format!(
            "{path}: members of {parent} are {member_type}, got {value}"
        ));
    }
}

fn check_value(path: &str, field: &Field, value: &Value, found: &mut Vec<String>) {
    let is_array = field.normalize.iter().any(|n| n == "array");
    let items: Vec<&Value> = match (value, is_array) {
        (Value::Array(items), true) => items.iter().collect(),
        (_, true) => {
            found.push(format!(
                "{path}: ECS normalizes it to an array, got {value}"
            ));
            vec![value]
        }
        (Value::Array(_), false) => {
            found.push(format!("{path}: a single {}, got an array", field.kind));
            return;
        }
        _ => vec![value],
    };
    for item in items {
        if !value_has_type(item, &field.kind) {
            found.push(format!("{path}: ECS type {}, got {item}", field.kind));
        }
        if !field.allowed_values.is_empty() {
            let allowed = field
                .allowed_values
                .iter()
                .any(|a| Some(a.name.as_str()) == item.as_str());
            if !allowed {
                found.push(format!("{path}: {item} is not one of ECS's allowed values"));
            }
        }
    }
}

/// Whether a JSON value can be indexed as the ECS type `kind`.
fn value_has_type(v: &Value, kind: &str) -> bool {
    match kind {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" | "ip" => {
            v.is_string()
        }
        "date" => v
            .as_str()
            .is_some_and(|s| thoth_event::parse_rfc3339(s).is_ok()),
        "long" | "integer" | "short" | "byte" => v.is_i64() || v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" | "flattened" | "nested" => v.is_object(),
        _ => false,
    }
}

/// Every `event.type` must be one ECS expects with each of the document's categories.
fn check_category_types(doc: &Value, defs: &BTreeMap<String, Field>, found: &mut Vec<String>) {
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let categories = strings(&doc["event"]["category"]);
    let types = strings(&doc["event"]["type"]);
    let Some(category_field) = defs.get("event.category") else {
        return;
    };
    for category in &categories {
        let Some(def) = category_field
            .allowed_values
            .iter()
            .find(|a| &a.name == category)
        else {
            continue;
        };
        if def.expected_event_types.is_empty() {
            continue;
        }
        for t in types
            .iter()
            .filter(|t| !def.expected_event_types.contains(t))
        {
            found.push(format!(
                "event.type {t:?} is not one ECS expects with event.category {category:?} ({:?})",
                def.expected_event_types
            ));
        }
    }
}
