//! The deployment assets in `deploy/` cannot rot: the Helm chart's config validates with the
//! real binary, its templates and every manifest parse, the objects have the probes, volumes
//! and security settings operators rely on, and the alert rules name metrics the gateway has.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use support::BIN;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Helm template with every action replaced, so its YAML skeleton can be parsed without
/// helm: lines that are only actions (`{{- if }}`, `{{- include … | nindent }}`) are dropped,
/// an action inside a line becomes a placeholder scalar.
fn template_skeleton(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut rest = line;
        let mut rendered = String::new();
        while let Some(start) = rest.find("{{") {
            rendered.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .expect("an unclosed template action")
                + start
                + 2;
            rendered.push('x');
            rest = &rest[end..];
        }
        rendered.push_str(rest);
        if rendered.trim() == "x" {
            continue;
        }
        // `key: [x]`-like flows and quoted actions stay valid YAML.
        out.push_str(&rendered);
        out.push('\n');
    }
    out
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn chart() -> PathBuf {
    repo("deploy/helm/thoth-gateway")
}

#[test]
fn the_charts_default_config_validates_with_secrets_as_files() {
    let values = yaml(&chart().join("values.yaml"));
    let config = values["config"]
        .as_str()
        .expect("values.config is the TOML");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    // Every secret the config names is a file under /etc/thoth/secrets/.
    let mut names = BTreeSet::new();
    for part in config.split("/etc/thoth/secrets/").skip(1) {
        let name: String = part.chars().take_while(|c| *c != '"').collect();
        let value = if name.contains("webhook") {
            "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==".to_string()
        } else if name == "redis-url" {
            "redis://:test-password@redis.thoth.svc:6379/0".to_string()
        } else {
            format!("test-{name}")
        };
        std::fs::write(secrets.join(&name), value + "\n").unwrap();
        names.insert(name);
    }
    assert!(
        names.contains("hec-token") && names.contains("admin-token"),
        "{names:?}"
    );
    assert!(
        !config.contains("token = \"") && !config.contains("secret = \""),
        "no inline secrets in the chart"
    );
    let text = config
        .replace("/etc/thoth/secrets/", &format!("{}/", secrets.display()))
        .replace(
            "/var/lib/thoth",
            &dir.path().join("data").display().to_string(),
        );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("test-password"),
        "the Redis password is never shown"
    );
}

#[test]
fn several_replicas_need_shared_state_and_the_test_redis_manifest_parses() {
    let values = yaml(&chart().join("values.yaml"));
    let config = values["config"].as_str().unwrap();
    let statefulset = std::fs::read_to_string(chart().join("templates/statefulset.yaml")).unwrap();
    // The chart refuses replicaCount > 1 unless the config shares state (helm renders the
    // guard where it is installed; here: it is there, and every stage satisfies it).
    assert!(
        statefulset.contains("gt (int .Values.replicaCount) 1")
            && statefulset.contains("fail \"replicaCount > 1 needs [state] backend"),
        "the guard is in the StatefulSet template"
    );
    let shared = config.lines().any(|l| {
        let l = l.split('#').next().unwrap().replace(' ', "");
        l == "backend=\"redis\""
    });
    for stage in ["canary", "pilot", "full"] {
        let v = yaml(&chart().join(format!("stages/{stage}.yaml")));
        let replicas = v["replicaCount"]
            .as_u64()
            .or(values["replicaCount"].as_u64())
            .unwrap();
        assert!(
            replicas <= 1 || shared,
            "{stage}: {replicas} replicas without shared state"
        );
    }
    let docs = documents(&std::fs::read_to_string(repo("deploy/redis/redis.yaml")).unwrap());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    assert_eq!(docs[1]["metadata"]["name"], "redis");
}

#[test]
fn the_chart_has_a_statefulset_with_a_wal_volume_probes_and_a_locked_down_container() {
    let mut kinds = BTreeSet::new();
    let mut statefulset = None;
    for entry in std::fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let skeleton = template_skeleton(&text);
        let docs = std::panic::catch_unwind(|| documents(&skeleton))
            .unwrap_or_else(|_| panic!("{} does not parse:\n{skeleton}", path.display()));
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap().to_string();
            if kind == "StatefulSet" {
                statefulset = Some(doc.clone());
            }
            kinds.insert(kind);
        }
    }
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "Job",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
        "StatefulSet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(kinds, expected);
    let sts = statefulset.unwrap();
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"/var/lib/thoth"), "{mounts:?}");
    assert!(mounts.contains(&"/etc/thoth/secrets"), "{mounts:?}");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    // The security context is an include; check the helper it expands.
    let helpers = std::fs::read_to_string(chart().join("templates/_helpers.tpl")).unwrap();
    for needle in [
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
    ] {
        assert!(helpers.contains(needle), "{needle}");
    }
    // The data dir of the chart's config is the volume.
    let values = yaml(&chart().join("values.yaml"));
    assert!(values["config"]
        .as_str()
        .unwrap()
        .contains("data_dir = \"/var/lib/thoth\""));
    assert!(values["resources"]["requests"]["memory"].is_string());
    let chart_yaml = yaml(&chart().join("Chart.yaml"));
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_skeleton_check_fails_on_broken_yaml() {
    // The test of the test: a mis-indented template is caught.
    let broken =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n labels: x\n";
    let skeleton = template_skeleton(broken);
    assert!(std::panic::catch_unwind(|| documents(&skeleton)).is_err());
}

#[test]
fn argo_cd_rolls_out_canary_then_pilot_then_full_with_existing_value_files() {
    let set = yaml(&repo("deploy/argocd/applicationset.yaml"));
    assert_eq!(set["kind"], "ApplicationSet");
    let steps: Vec<&str> = set["spec"]["strategy"]["rollingSync"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["matchExpressions"][0]["values"][0].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["canary", "pilot", "full"]);
    let source = &set["spec"]["template"]["spec"]["source"];
    assert_eq!(source["path"], "deploy/helm/thoth-gateway");
    for element in set["spec"]["generators"][0]["list"]["elements"]
        .as_sequence()
        .unwrap()
    {
        let stage = element["stage"].as_str().unwrap();
        let values = yaml(&chart().join(format!("stages/{stage}.yaml")));
        assert_eq!(values["stage"], stage);
    }
    let canary = yaml(&repo("deploy/argocd/application-canary.yaml"));
    assert_eq!(canary["kind"], "Application");
    for file in canary["spec"]["source"]["helm"]["valueFiles"]
        .as_sequence()
        .unwrap()
    {
        assert!(chart().join(file.as_str().unwrap()).exists(), "{file:?}");
    }
}

/// Every `thoth_*` metric name registered in the workspace's sources.
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![repo("src")];
    for krate in [
        "event",
        "config",
        "ingest",
        "enrich",
        "wal",
        "sinks",
        "transform",
    ] {
        dirs.push(repo(&format!("{krate}/src")));
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("\"thoth_").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if part[name.len()..].starts_with('"') {
                        names.insert(format!("thoth_{name}"));
                    }
                }
            }
        }
    }
    names
}

fn metric_names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("thoth_"))
        .map(|w| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w);
            base.to_string()
        })
        .collect()
}

#[test]
fn every_alert_rule_watches_a_metric_the_gateway_exports() {
    let rules = yaml(&repo("deploy/prometheus/alerts.yaml"));
    let known = registered_metrics();
    assert!(known.contains("thoth_sink_health"), "{known:?}");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            assert!(rule["labels"]["severity"].is_string(), "{name}");
            assert!(rule["annotations"]["summary"].is_string(), "{name}");
            for metric in metric_names_in(expr) {
                assert!(
                    known.contains(&metric),
                    "{name}: {metric} is not a gateway metric"
                );
            }
            alerts.insert(name.to_string());
        }
    }
    for needed in [
        "ThothSinkFailing",
        "ThothQueueAgeHigh",
        "ThothWalNearlyFull",
        "ThothDeadLettersGrowing",
        "ThothMdmSyncStale",
    ] {
        assert!(alerts.contains(needed), "{needed}");
    }
    // The test of the test: a misspelt metric is caught.
    assert!(!metric_names_in("rate(thoth_sink_retrys_total[5m])")
        .iter()
        .all(|m| known.contains(m)));
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root() {
    let text = std::fs::read_to_string(repo("deploy/Dockerfile")).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(text.contains("USER 65532:65532"));
    assert!(text.contains("VOLUME [\"/var/lib/thoth\"]"));
    // The shipped binary comes from the release profile, and names its commit.
    assert!(text.contains("cargo build --release --locked --bin thoth-gateway"));
    assert!(text.contains("ARG THOTH_GIT_COMMIT"));
    let cargo = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    let release = cargo
        .split("[profile.release]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    assert!(
        release.contains("strip = \"debuginfo\""),
        "no full debuginfo in the shipped binary"
    );
    assert!(!release.contains("debug = "), "{release}");
}

#[test]
fn terraform_and_pulumi_install_the_chart_with_secrets_from_files() {
    let main_tf = std::fs::read_to_string(repo("deploy/terraform/main.tf")).unwrap();
    assert!(main_tf.contains("resource \"helm_release\""));
    assert!(main_tf.contains("file(path)"), "secrets come from files");
    let outputs = std::fs::read_to_string(repo("deploy/terraform/outputs.tf")).unwrap();
    assert!(!outputs.contains("sensitive"), "outputs are non-secret");
    if let Ok(out) = std::process::Command::new("terraform")
        .args(["fmt", "-check", "-recursive"])
        .current_dir(repo("deploy/terraform"))
        .output()
    {
        assert!(
            out.status.success(),
            "terraform fmt: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let pulumi = yaml(&repo("deploy/pulumi/Pulumi.yaml"));
    assert_eq!(pulumi["runtime"], "nodejs");
    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/pulumi/package.json")).unwrap())
            .unwrap();
    assert!(package["dependencies"]["@pulumi/kubernetes"].is_string());
    let index = std::fs::read_to_string(repo("deploy/pulumi/index.ts")).unwrap();
    assert!(index.contains("k8s.helm.v3.Release"));
    assert!(index.contains("\"helm\", \"thoth-gateway\""));
}

/// The Prometheus text of `/metrics` as metric name → the label names its samples carry
/// (a histogram's `_bucket`/`_sum`/`_count` samples count for the histogram, with `le`).
fn exported_metrics(text: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut metrics = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            metrics.entry(name.to_string()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => (name, rest.split_once('}').unwrap().0),
                None => (line.split(' ').next().unwrap(), ""),
            };
            let base = metric_names_in(name)
                .pop()
                .unwrap_or_else(|| name.to_string());
            let set = metrics.entry(base).or_default();
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                set.insert(pair.split('=').next().unwrap().to_string());
            }
        }
    }
    metrics
}

/// Label names a PromQL expression groups by or matches on (`by (a, b)`, `{a="x"}`).
fn labels_in(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for part in expr.split("by (").skip(1) {
        let list = part.split(')').next().unwrap();
        labels.extend(list.split(',').map(|l| l.trim().to_string()));
    }
    for part in expr.split('{').skip(1) {
        let matchers = part.split('}').next().unwrap();
        for m in matchers.split(',') {
            let name: String = m
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                labels.push(name);
            }
        }
    }
    labels
}

/// Labels Prometheus adds to every series from the scrape target (the ServiceMonitor's pod).
const TARGET_LABELS: [&str; 4] = ["namespace", "pod", "instance", "job"];

#[test]
fn the_grafana_dashboard_queries_only_what_a_running_gateway_exports() {
    let path = repo("deploy/grafana/thoth-gateway.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(chart().join("dashboards/thoth-gateway.json")).unwrap(),
        "the Helm chart ships the same dashboard as deploy/grafana/"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();

    // A gateway that has refused an event, dead-lettered one and taken an MDM push, so every
    // series a dashboard can ask for exists.
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[sinks.broken]
type = "file"
path = "{}"
remap = 'abort'

[[mdm.providers]]
name = "pushed"
tenant_id = "globex"
kind = "jamf"
"#,
        dir.path().join("broken.ndjson").display()
    );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, support::config_text(dir.path(), "", "", &extra)).unwrap();
    let gw = support::Gateway::start(&cfg);
    let client = support::client();
    let post = |body: String| support::post_ndjson(&client, &gw, "acme-token", body).0;
    assert_eq!(post(support::decision("d-1", "acme", "ep-7f3a")), 200);
    assert_eq!(
        post("{\"type\":\"decision\",\"tenant_id\":\"acme\"}".into()),
        400
    );
    let push = client
        .put(gw.url("/v1/mdm/pushed"))
        .bearer_auth("admin-token")
        .header("content-type", "application/json")
        .body(std::fs::read(support::example("acme-jamf.json")).unwrap())
        .send()
        .unwrap();
    assert_eq!(push.status(), 200);
    support::wait_until("the event is dead-lettered by the broken sink", || {
        support::dlq(&cfg, "list", "broken")["count"] == 1
    });
    let exported = exported_metrics(&gw.metrics());

    let mut queried = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        titles.insert(title.to_string());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names_in(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} queries no gateway metric"
            );
            for name in &names {
                assert!(
                    exported.contains_key(name),
                    "{title}: {name} is not in /metrics"
                );
                queried.insert(name.clone());
            }
            for label in labels_in(expr) {
                let known = TARGET_LABELS.contains(&label.as_str())
                    || (label == "le" && expr.contains("_bucket"))
                    || names.iter().any(|n| exported[n].contains(&label));
                assert!(known, "{title}: no metric of {expr} has the label {label}");
            }
        }
    }
    // What operators open the dashboard for.
    for needed in [
        "thoth_events_received_total",
        "thoth_events_rejected_total",
        "thoth_sink_queue_events",
        "thoth_sink_oldest_event_age_seconds",
        "thoth_sink_retries_total",
        "thoth_sink_dead_letters_total",
        "thoth_event_delivery_seconds",
        "thoth_wal_bytes",
        "thoth_mdm_last_success_timestamp_seconds",
        "thoth_checkins_endpoints",
    ] {
        assert!(queried.contains(needed), "the dashboard shows no {needed}");
    }
    for row in ["Ingest", "Sinks", "MDM and check-ins"] {
        assert!(titles.contains(row), "row {row}");
    }
    // The test of the test: a misspelt metric and a label no metric has are caught.
    assert!(!exported.contains_key("thoth_sink_queue_event"));
    assert!(!exported["thoth_sink_queue_events"].contains("tenant"));

    // The chart's ConfigMap carries the sidecar's label and the dashboard file.
    let template =
        std::fs::read_to_string(chart().join("templates/grafana-dashboard.yaml")).unwrap();
    let doc = documents(&template_skeleton(&template)).pop().unwrap();
    assert_eq!(doc["kind"], "ConfigMap");
    assert!(template.contains(".Files.Get \"dashboards/thoth-gateway.json\""));
    let values = yaml(&chart().join("values.yaml"));
    assert_eq!(values["grafanaDashboard"]["label"], "grafana_dashboard");
}
