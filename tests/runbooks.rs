//! The runbooks cannot rot: every ```toml block in `runbooks/*.md`, `docs/*.md` and the README
//! is checked with the real binary — `validate`, and `test` when it has `[[tests]]` — and
//! against the config's JSON Schema (`thoth-gateway config schema`). A block is either a
//! complete config or a fragment; a fragment gets what it leaves out (data dir, listener,
//! tokens, tenants, MDM snapshots, a sink) from a base config, and the secret files and paths it
//! names are made in a temp dir.

mod support;

use std::path::{Path, PathBuf};

use support::{example, BIN};

struct Snippet {
    file: String,
    line: usize,
    text: String,
}

/// The ```toml blocks of a markdown text, with the line each starts on.
fn toml_blocks(file: &str, markdown: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut current: Option<Snippet> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```toml") => {
                current = Some(Snippet {
                    file: file.to_string(),
                    line: i + 1,
                    text: String::new(),
                })
            }
            Some(s) if fence.starts_with("```") => {
                out.push(std::mem::replace(
                    s,
                    Snippet {
                        file: String::new(),
                        line: 0,
                        text: String::new(),
                    },
                ));
                current = None;
            }
            Some(s) => {
                // Blocks indented under a list item: drop the item's indentation.
                let indent = markdown.lines().nth(s.line - 1).unwrap().len()
                    - markdown.lines().nth(s.line - 1).unwrap().trim_start().len();
                s.text
                    .push_str(line.get(indent..).unwrap_or(line.trim_start()));
                s.text.push('\n');
            }
            None => {}
        }
    }
    out
}

const WEBHOOK_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

/// Makes every `/etc/thoth/secrets/NAME` and `/run/secrets/NAME` the snippet names a file in
/// `dir`, and points `/var/lib/thoth` there.
fn localize(text: &str, dir: &Path) -> String {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut text = text.to_string();
    for prefix in ["/etc/thoth/secrets/", "/run/secrets/"] {
        for part in text.clone().split(prefix).skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .collect();
            let value = if name.contains("webhook") || name.contains("whsec") {
                WEBHOOK_SECRET.to_string()
            } else if name.contains("redis") {
                "redis://:test-password@redis:6379/0".to_string()
            } else {
                format!("test-{name}")
            };
            std::fs::write(secrets.join(&name), value + "\n").unwrap();
        }
        text = text.replace(prefix, &format!("{}/", secrets.display()));
    }
    text.replace("/var/lib/thoth", &dir.join("data").display().to_string())
}

/// A complete config from a snippet: the snippet plus what it leaves out.
fn complete(snippet: &str, dir: &Path) -> String {
    let mdm = dir.join("mdm");
    std::fs::create_dir_all(&mdm).unwrap();
    for f in ["acme-jamf.json", "globex-intune.json"] {
        std::fs::copy(example(f), mdm.join(f)).unwrap();
    }
    let has = |needle: &str| snippet.lines().any(|l| l.trim_start().starts_with(needle));
    let mut head = String::new();
    if !has("data_dir") {
        head.push_str(&format!("data_dir = \"{}\"\n", dir.join("data").display()));
    }
    let mut tail = String::new();
    if !has("[api]") {
        tail.push_str("[api]\nlisten = \"127.0.0.1:0\"\n");
    }
    if !has("[[api.tokens]]") {
        tail.push_str("[[api.tokens]]\nadmin = true\ntoken = \"admin-token\"\n");
    }
    if !has("[[tenants]]") {
        tail.push_str(
            "[[tenants]]\nid = \"acme\"\nname = \"Acme Corp\"\n[[tenants]]\nid = \"globex\"\nname = \"Globex Inc\"\n",
        );
    }
    if !has("[[mdm.providers]]") {
        tail.push_str(
            "[[mdm.providers]]\nname = \"acme-jamf\"\ntenant_id = \"acme\"\nkind = \"jamf\"\nfile = \"mdm/acme-jamf.json\"\nendpoint_id_attribute = \"Thoth Endpoint ID\"\n\
             [[mdm.providers]]\nname = \"globex-intune\"\ntenant_id = \"globex\"\nkind = \"intune\"\nfile = \"mdm/globex-intune.json\"\n",
        );
    }
    if !has("[sinks.") {
        tail.push_str(&format!(
            "[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
            dir.join("out.ndjson").display()
        ));
    }
    format!("{head}{snippet}\n{tail}")
}

/// Checks one snippet: `validate`, then `test` when it has `[[tests]]`.
fn check(snippet: &Snippet) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let text = complete(&localize(&snippet.text, dir.path()), dir.path());
    let cfg: PathBuf = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();

    let mut commands = vec!["validate"];
    if snippet.text.contains("[[tests]]") {
        commands.push("test");
    }
    for command in commands {
        let out = std::process::Command::new(BIN)
            .args([command, "--config"])
            .arg(&cfg)
            .env("THOTH_HEC_TOKEN", "test-hec-token")
            .env("THOTH_KAFKA_PASSWORD", "test-kafka-password")
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "{}:{}: `thoth-gateway {command}` failed:\n{}{}\n--- the config checked:\n{text}",
                snippet.file,
                snippet.line,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // The binary's verdict first (its errors are the precise ones), then the editor's schema.
    let schema_errors = support::schemas::config_errors(&text);
    if !schema_errors.is_empty() {
        return Err(format!(
            "{}:{}: does not satisfy the config schema:\n{schema_errors}\n--- the config checked:\n{text}",
            snippet.file, snippet.line
        ));
    }
    Ok(())
}

fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    for dir in ["docs", "runbooks"] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        entries.sort();
        for path in entries {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            docs.push((name, std::fs::read_to_string(path).unwrap()));
        }
    }
    docs
}

#[test]
fn every_config_snippet_in_the_runbooks_validates() {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for (file, text) in documents() {
        for snippet in toml_blocks(&file, &text) {
            checked.push(format!("{}:{}", snippet.file, snippet.line));
            if let Err(e) = check(&snippet) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The runbooks the issue asks for each carry at least one checked snippet.
    for file in [
        "runbooks/splunk.md",
        "runbooks/sentinel.md",
        "runbooks/elastic.md",
        "runbooks/soar.md",
        "runbooks/pam.md",
        "runbooks/operations.md",
        "docs/configuration.md",
    ] {
        assert!(
            checked.iter().any(|c| c.starts_with(&format!("{file}:"))),
            "{file} has no config snippet; checked: {checked:?}"
        );
    }
}

#[test]
fn a_snippet_that_stops_validating_fails_the_check() {
    // The test of the test: a runbook whose snippet lost a required key, and one whose
    // routing test no longer holds, are both reported with their file and line.
    let broken = "# Runbook\n\ntext\n\n```toml\n[sinks.splunk]\ntype = \"splunk_hec\"\ntoken_file = \"/etc/thoth/secrets/hec-token\"\n```\n";
    let blocks = toml_blocks("runbooks/broken.md", broken);
    assert_eq!(blocks.len(), 1);
    let err = check(&blocks[0]).unwrap_err();
    assert!(err.starts_with("runbooks/broken.md:5:"), "{err}");
    assert!(err.contains("sinks.splunk.endpoint"), "{err}");

    let wrong_route = "   ```toml\n   [sinks.soar]\n   type = \"webhook\"\n   url = \"https://soar.example/h\"\n   secret_file = \"/etc/thoth/secrets/soar-webhook-secret\"\n   condition = '.risk == \"critical\"'\n   [[tests]]\n   name = \"high goes to the SOAR\"\n   input = { type = \"decision\", tenant_id = \"acme\", risk = \"high\", decision = \"block\" }\n   expect_sinks = [\"soar\"]\n   ```\n";
    let blocks = toml_blocks("runbooks/route.md", wrong_route);
    let err = check(&blocks[0]).unwrap_err();
    assert!(err.contains("`thoth-gateway test` failed"), "{err}");
}

#[test]
fn the_printed_config_schema_is_the_documented_one_and_the_examples_satisfy_it() {
    let out = std::process::Command::new(BIN)
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let documented: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/schema/config.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, documented);
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    for path in examples {
        let text = std::fs::read_to_string(&path).unwrap();
        support::schemas::assert_config(&path.display().to_string(), &text);
    }
    // The test of the test: a misspelt key, a wrong type and a value out of its set fail.
    for (broken, expected) in [
        (
            "[api]\nlisten = \"127.0.0.1:0\"\nmax_body_byte = \"1MiB\"\n",
            "max_body_byte",
        ),
        ("[wal]\nfsync = 3\n", "fsync"),
        ("[sinks.x]\ntype = \"splunk\"\n", "type"),
    ] {
        let errors = support::schemas::config_errors(broken);
        assert!(errors.contains(expected), "{broken}: {errors}");
    }
}
