//! Criterion micro-benchmarks of the hot stages, each reported per event (issue 10):
//! decode + validate, enrichment lookup against a 100 000-endpoint index, WAL append of a
//! 500-event frame with and without fsync, Splunk HEC encode + gzip, `_bulk` encode + gzip;
//! and the decode time of hostile events with 10 000 and 100 000 members.
//! (The VRL stage is `cargo bench -p thoth-transform --bench vrl`.)
//!
//! `cargo bench --bench stages`

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use thoth_config::{Config, SinkKind};
use thoth_enrich::{parse_snapshot, EndpointIndex, Enricher, ProviderSnapshot};
use thoth_event::{decode_batch, BodyFormat, Event, Limits};
use thoth_load::generate::{BatchTemplate, Rng, Workload};
use thoth_sinks::{Destination, Elasticsearch, SplunkHec};
use thoth_wal::record::{EnrichedRecord, RecordWriter};
use thoth_wal::{FrameBuilder, FsyncPolicy, Wal, WalOptions};

const BATCH: usize = 500;
const ENDPOINTS: u32 = 100_000;

fn config(dir: &Path) -> Config {
    let text = r#"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[[api.tokens]]
tenant_id = "acme"
token = "t"
[[tenants]]
id = "acme"
name = "Acme Corp"
compliance_profile = "soc2"
[[mdm.fleet_rules]]
tenant_id = "acme"
when = { department = "Engineering" }
fleet = { id = "eng-macs", name = "Engineering Macs" }
[sinks.splunk]
type = "splunk_hec"
endpoint = "http://127.0.0.1:8088"
token = "hec-token"
[sinks.elastic]
type = "elasticsearch"
endpoints = ["http://127.0.0.1:9200"]
"#;
    Config::from_toml(text, dir).unwrap_or_else(|e| panic!("{e:?}"))
}

/// A realistic 500-event NDJSON batch (about 700 bytes per decision).
fn ndjson_batch() -> Vec<u8> {
    let workload = Workload {
        endpoints: ENDPOINTS,
        batch: BATCH,
        ..Workload::default()
    };
    let template = BatchTemplate::build(
        &workload,
        "acme",
        0,
        "2026-12-01T10:00:00.000Z",
        &mut Rng::new(42),
    );
    let mut body = Vec::new();
    template.stamp(0, &mut body);
    body
}

fn limits() -> Limits {
    Limits {
        max_event_bytes: 1 << 20,
        max_depth: 64,
        max_members: 10_000,
        max_events: 10_000,
    }
}

fn decode(body: &[u8]) -> Vec<Event> {
    decode_batch(
        body,
        BodyFormat::Ndjson,
        &limits(),
        "2026-12-01T10:00:00.000Z",
    )
    .expect("valid batch")
}

fn enricher(config: &Config) -> std::sync::Arc<Enricher> {
    let mut jamf = Vec::new();
    thoth_load::snapshot::write_jamf("acme", ENDPOINTS, &mut jamf).unwrap();
    let records = parse_snapshot(
        thoth_config::MdmKind::Jamf,
        &jamf,
        Some("Thoth Endpoint ID"),
    )
    .unwrap();
    let snapshot = ProviderSnapshot {
        provider: "acme-jamf".into(),
        tenant_id: "acme".into(),
        kind: thoth_config::MdmKind::Jamf,
        taken_at: "2026-12-01T09:00:00Z".into(),
        records,
    };
    let enricher = Enricher::new(config, &prometheus::Registry::new()).unwrap();
    enricher.swap_index(EndpointIndex::build(&[snapshot], &config.mdm.fleet_rules));
    enricher
}

/// Enriched events as sinks receive them: read from WAL records, with their field index.
fn enriched_events(enricher: &Enricher, events: &[Event]) -> Vec<EnrichedRecord> {
    let now = time::OffsetDateTime::now_utc();
    let mut records = RecordWriter::default();
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            let written = records.write(&mut out, &e.tenant_id, |buf, layout| {
                enricher.enrich_into(e, now, buf, layout);
                Ok::<(), std::convert::Infallible>(())
            });
            let Ok(()) = written;
            let entry = thoth_wal::Entry {
                seq: 0,
                appended_ms: 0,
                data: bytes::Bytes::from(out),
            };
            EnrichedRecord::from_entry(&entry).expect("a record")
        })
        .collect()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    // The sinks' setting: fast compression.
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

fn encode_and_gzip<D: Destination>(
    destination: &D,
    events: &[EnrichedRecord],
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    for event in events {
        destination.encode_event(event, out).unwrap();
    }
    gzip(out).len()
}

fn stages(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let body = ndjson_batch();
    let events = decode(&body);
    assert_eq!(events.len(), BATCH);
    let enricher = enricher(&config);
    let enriched = enriched_events(&enricher, &events);
    assert!(
        enriched
            .iter()
            .filter(|e| e.json.windows(18).any(|w| w == b"\"status\":\"matched\""))
            .count()
            > BATCH * 9 / 10,
        "the events are enriched from the index"
    );

    let mut g = c.benchmark_group("stage_per_event");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode_validate", |b| b.iter(|| decode(black_box(&body))));

    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::with_capacity(2048);
    let mut layout = thoth_event::Layout::default();
    g.bench_function("enrich_lookup_100k", |b| {
        b.iter(|| {
            for e in &events {
                out.clear();
                enricher.enrich_into(black_box(e), now, &mut out, &mut layout);
            }
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, fsync) in [
        ("wal_append_fsync", FsyncPolicy::Always),
        (
            "wal_append_no_fsync",
            FsyncPolicy::Interval(Duration::from_secs(3600)),
        ),
    ] {
        let wal_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let wal = rt.block_on(async {
            let opts = WalOptions {
                max_bytes: 64 << 30,
                segment_bytes: 64 << 20,
                fsync,
            };
            Wal::open(wal_dir.path(), opts, &[]).unwrap().0
        });
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut frame = FrameBuilder::new();
                    enriched.iter().for_each(|e| frame.push(&e.json));
                    frame
                },
                |frame| rt.block_on(wal.append(frame)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        wal.close();
    }

    let sink = |name: &str| &config.sinks[name].kind;
    let SinkKind::SplunkHec(hec) = sink("splunk") else {
        unreachable!()
    };
    let SinkKind::Elasticsearch(es) = sink("elastic") else {
        unreachable!()
    };
    let hec = SplunkHec::new(hec).unwrap();
    let es = Elasticsearch::new(es).unwrap();
    let mut body_out = Vec::with_capacity(1 << 20);
    g.bench_function("hec_encode", |b| {
        b.iter(|| {
            body_out.clear();
            for event in black_box(&enriched) {
                hec.encode_event(event, &mut body_out).unwrap();
            }
            body_out.len()
        })
    });
    g.bench_function("hec_encode_gzip", |b| {
        b.iter(|| encode_and_gzip(&hec, black_box(&enriched), &mut body_out))
    });
    g.bench_function("bulk_encode_gzip", |b| {
        b.iter(|| encode_and_gzip(&es, black_box(&enriched), &mut body_out))
    });
    g.finish();
}

/// One event with `keys` members (what a hostile client sends to make the duplicate-key check
/// or the parser work hard).
fn wide_event(keys: usize) -> Vec<u8> {
    let mut e = String::from(r#"{"type":"alert","tenant_id":"acme","title":"wide""#);
    for i in 0..keys {
        e.push_str(&format!(r#","k{i}":0"#));
    }
    e.push('}');
    e.into_bytes()
}

/// Worst-case events: the decode time of one event with 10 000 members (the default
/// `api.max_members`) and with 100 000 (1 MiB; the bound raised).
fn hostile(c: &mut Criterion) {
    let mut g = c.benchmark_group("hostile_event");
    let limits = Limits {
        max_event_bytes: 4 << 20,
        max_members: 200_000,
        ..limits()
    };
    for keys in [10_000usize, 100_000] {
        let body = wide_event(keys);
        g.bench_function(format!("decode_{keys}_keys"), |b| {
            b.iter(|| {
                decode_batch(
                    black_box(&body),
                    BodyFormat::Json,
                    &limits,
                    "2026-12-01T10:00:00Z",
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = stages, hostile
}
criterion_main!(benches);
