//! The examples in `docs/` are true: every ```json block of `docs/*.md` validates against the
//! schema of what it shows — an enriched event (it has `context`) against
//! `docs/schema/enriched.schema.json`, an input event against `docs/schema/event.schema.json`,
//! an error body against the OpenAPI document's `Error` — and the input examples are accepted
//! by the real binary.

mod support;

use std::path::Path;

use serde_json::Value;
use support::schemas;

/// `(file:line, parsed block)` of every ```json block in docs/*.md.
fn json_examples() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start() == "```json" => block = Some((i + 1, String::new())),
                Some((start, body)) if line.trim_start() == "```" => {
                    let where_ = format!("{name}:{start}");
                    let value = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("{where_}: not JSON: {e}"));
                    out.push((where_, value));
                    block = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

enum Kind {
    Enriched,
    Input,
    Error,
}

fn kind_of(example: &Value) -> Option<Kind> {
    if example.get("error").is_some() {
        Some(Kind::Error)
    } else if example.get("context").is_some() {
        Some(Kind::Enriched)
    } else if example.get("type").is_some() {
        Some(Kind::Input)
    } else {
        None
    }
}

fn problems(example: &Value) -> String {
    let by_ref = |r: String| {
        schemas::errors(
            &schemas::validator(&serde_json::json!({ "$ref": r })),
            example,
        )
    };
    match kind_of(example) {
        Some(Kind::Enriched) => by_ref("urn:thoth-gateway:schema:enriched".into()),
        Some(Kind::Input) => by_ref("urn:thoth-gateway:schema:event".into()),
        Some(Kind::Error) => by_ref(format!(
            "{}#/components/schemas/Error",
            schemas::doc_uri("openapi.yaml")
        )),
        None => "an example of nothing the docs' schemas describe".into(),
    }
}

#[test]
fn every_json_example_in_the_docs_matches_its_schema() {
    let examples = json_examples();
    let mut failures = Vec::new();
    for (at, example) in &examples {
        let found = problems(example);
        if !found.is_empty() {
            failures.push(format!("{at}: {found}\n{example}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let count = |k: fn(&Kind) -> bool| {
        examples
            .iter()
            .filter(|(_, e)| kind_of(e).as_ref().is_some_and(k))
            .count()
    };
    assert!(
        count(|k| matches!(k, Kind::Input)) >= 3,
        "decision, check-in and alert examples"
    );
    assert!(
        count(|k| matches!(k, Kind::Enriched)) >= 2,
        "matched and unmatched examples"
    );
    assert!(count(|k| matches!(k, Kind::Error)) >= 1, "an error body");
}

#[test]
fn the_input_examples_are_accepted_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, support::config_text(dir.path(), "", "", "")).unwrap();
    let gw = support::Gateway::start(&cfg);
    let client = support::client();
    for (at, example) in json_examples() {
        if !matches!(kind_of(&example), Some(Kind::Input)) {
            continue;
        }
        let token = format!("{}-token", example["tenant_id"].as_str().unwrap());
        let (status, body, _) = support::post_ndjson(&client, &gw, &token, example.to_string());
        assert_eq!(status, 200, "{at}: {body}");
    }
}

#[test]
fn an_example_that_breaks_its_schema_is_caught() {
    let cases = [
        serde_json::json!({"type":"decision","tenant_id":"acme","endpoint_id":"e","risk":"severe","decision":"block"}),
        serde_json::json!({"type":"decision","tenant_id":"acme","context":{"tenant":{"id":"acme"}},"enrichment":{"status":"matched"}}),
        serde_json::json!({"error":"x","details":[]}),
        serde_json::json!({"accepted": 1}),
    ];
    for example in cases {
        assert!(!problems(&example).is_empty(), "{example}");
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every relative link target (`](path#anchor)`) that does not resolve in the repository.
fn broken_links(root: &Path, file: &str, text: &str) -> Vec<String> {
    let mut broken = Vec::new();
    for part in text.split("](").skip(1) {
        let Some(target) = part.split(')').next() else {
            continue;
        };
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let resolved = if path.is_empty() {
            root.join(file)
        } else {
            root.join(file).parent().unwrap().join(path)
        };
        if !resolved.exists() {
            broken.push(format!("{file}: {target} (no such file)"));
            continue;
        }
        if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
            let doc = std::fs::read_to_string(&resolved).unwrap();
            if !doc
                .lines()
                .filter(|l| l.starts_with('#'))
                .any(|h| anchor_of(h) == anchor)
            {
                broken.push(format!("{file}: {target} (no such heading)"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = [
        "README.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "CHANGELOG.md",
        "BENCHMARKS.md",
        "RELIABILITY.md",
    ]
    .map(String::from)
    .into();
    for dir in ["docs", "runbooks"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".md") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        broken.extend(broken_links(
            root,
            file,
            &std::fs::read_to_string(root.join(file)).unwrap(),
        ));
    }
    assert!(broken.is_empty(), "{broken:#?}");
    // The test of the test: a moved file and a renamed heading are caught.
    let stale =
        "[x](runbooks/configuration.md) [y](docs/http-api.md#limitz) [z](docs/http-api.md#limits)";
    assert_eq!(broken_links(root, "README.md", stale).len(), 2);
    assert_eq!(
        anchor_of("## `[state]` (optional: several replicas)"),
        "state-optional-several-replicas"
    );
}
