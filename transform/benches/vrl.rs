//! The cost per event of the VRL stage: JSON → VRL value, a 5-line program, VRL value → JSON.
//! `cargo bench -p thoth-transform --bench vrl`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use thoth_transform::{json_to_value, value_to_json, VrlProgram};

/// An enriched decision as the file sink writes it (about 1 KB).
const EVENT: &[u8] = br#"{"type":"decision","event_id":"0193a0c4-5b1e-7c3a-9f00-2a4b6c8d0e1f","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-7f3a","device_serial":"C02XK1ZJMD6R","hostname":"mbp-jdoe","user":"jdoe@acme.com","surface":"mcp","action":{"kind":"tool_call","tool":"github.create_pull_request","mcp_server":"github","target":"https://api.github.com"},"risk":"high","decision":"block","policy":{"id":"shadow-ai-default","version":3,"rule":"shadow_high"},"compliance_profile":"soc2","reason":"unsanctioned MCP server","proxy_version":"0.2.7","context":{"tenant":{"id":"acme","name":"Acme Corp","compliance_profile":"soc2"},"fleet":{"id":"eng-macs","name":"Engineering Macs"},"endpoint":{"id":"ep-7f3a","hostname":"mbp-jdoe","serial":"C02XK1ZJMD6R","os":"macOS","os_version":"15.1","owner":"jdoe@acme.com","department":"Engineering","site":"Berlin","model":"MacBook Pro (14-inch, 2023)","mdm":{"provider":"jamf","device_id":"412","managed":true,"last_sync":"2026-11-28T09:55:00Z"}},"health":{"status":"healthy","last_checkin":"2026-11-28T09:59:10.000Z"}},"enrichment":{"status":"matched","matched_on":"endpoint_id","snapshot":"2026-11-28T09:55:00.000Z"}}"#;

/// The 5-line global transform of the benchmark (as in docs/configuration.md).
const PROGRAM: &str = r#"
.severity_score = if .risk == "critical" { 4 } else if .risk == "high" { 3 } else { 1 }
.fleet = .context.fleet.id
.owner = downcase(string(.context.endpoint.owner) ?? "")
del(.proxy_version)
.gateway = "thoth"
"#;

fn bench(c: &mut Criterion) {
    let (program, _) = VrlProgram::compile("transform.source", PROGRAM).expect("compiles");
    let value = json_to_value(EVENT).unwrap();
    let mut g = c.benchmark_group("vrl_stage");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_to_value", |b| {
        b.iter(|| json_to_value(black_box(EVENT)).unwrap())
    });
    g.bench_function("value_to_json", |b| {
        b.iter(|| value_to_json(black_box(&value)))
    });
    g.bench_function("run_5_line_program", |b| {
        b.iter_batched(
            || value.clone(),
            |v| program.run(v).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("remap_json_end_to_end", |b| {
        b.iter(|| program.remap_json(black_box(EVENT)).unwrap())
    });
    // A sink condition builds only the fields it reads.
    let (condition, _) =
        VrlProgram::compile("c", r#".risk == "critical" || .type == "alert""#).unwrap();
    g.bench_function("condition_json_partial", |b| {
        b.iter(|| condition.condition_json(black_box(EVENT)).unwrap())
    });
    g.bench_function("condition_on_full_value", |b| {
        b.iter(|| {
            condition
                .condition(json_to_value(black_box(EVENT)).unwrap())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
