//! Event decoding and validation as ingest runs it: the first byte picks NDJSON or JSON and
//! whether the rest is gzip; the body is gunzipped within a limit, then decoded with small
//! limits. Nothing may panic, and what decodes must re-serialize to JSON that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_event::{decode_batch, BodyFormat, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    };
    let body = if mode & 2 == 0 {
        rest.to_vec()
    } else {
        match thoth_ingest::gunzip(rest, 1 << 20) {
            Ok(b) => b,
            Err(_) => return,
        }
    };
    let limits = Limits {
        max_event_bytes: 64 * 1024,
        max_depth: 16,
        max_events: 1000,
        max_members: 64,
    };
    if let Ok(events) = decode_batch(&body, format, &limits, "2026-12-01T00:00:00.000Z") {
        for e in events {
            let mut out = Vec::new();
            e.write_enriched(&mut out, &[("enrichment", br#"{"status":"unmatched"}"#)]);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|err| {
                panic!(
                    "enriched form is not JSON ({err}): {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert!(v.is_object());
        }
    }
});
