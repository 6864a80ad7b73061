//! The scanner for JSON the gateway holds as valid (thoth_event::scan) and the sinks' view
//! built on it: never panic on any bytes, and on valid JSON objects find exactly the members
//! serde_json finds. WAL records (with or without a field index) decode or are refused, and a
//! view read through any index never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_event::scan::{object_members, open_members};
use thoth_event::{EnrichedView, FieldIndex};
use thoth_wal::record;

fn walk(json: &[u8], depth: usize) {
    if depth > 8 {
        return;
    }
    if let Some(members) = object_members(json) {
        for (key, value) in members {
            let _ = key.decoded();
            walk(value, depth + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data, 0);
    // Values left open start where the closed ones do, member for member.
    if let (Some(closed), Some(open)) = (object_members(data), open_members(data)) {
        let closed: Vec<_> = closed.collect();
        let open: Vec<_> = open.take(closed.len() + 1).collect();
        assert_eq!(open.len(), closed.len());
        for ((ck, cv), (ok, ov)) in closed.iter().zip(&open) {
            assert_eq!(ck, ok);
            assert!(ov.starts_with(cv) && ov.as_ptr() == cv.as_ptr());
        }
    }
    let _ = EnrichedView::parse(data);
    if let Some(rec) = record::decode(data) {
        let _ = EnrichedView::read(rec.json, rec.fields.as_ref());
    }
    let encoded = 2 * FieldIndex::FIELDS.len();
    if let Some(index) = data
        .get(..encoded)
        .and_then(|b| FieldIndex::decode_named(&FieldIndex::FIELDS, b))
    {
        let _ = EnrichedView::read(&data[encoded..], Some(&index));
    }
    if let Ok(object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let mut scanned: Vec<(String, serde_json::Value)> = object_members(data)
            .expect("a valid object starts with {")
            .map(|(k, v)| {
                let value = serde_json::from_slice(v).expect("a member's value is valid JSON");
                (k.decoded().into_owned(), value)
            })
            .collect();
        // serde_json keeps the last of repeated keys, in key order.
        scanned.reverse();
        scanned.sort_by(|a, b| a.0.cmp(&b.0));
        scanned.dedup_by(|a, b| a.0 == b.0);
        assert_eq!(scanned, object.into_iter().collect::<Vec<_>>());
    }
});
