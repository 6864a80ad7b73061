//! The WAL record of one enriched event, inside a [frame](crate::FrameBuilder): the tenant id
//! (so routing by tenant needs no JSON parse), where the fields sinks map are in the JSON (so a
//! sink reads them without scanning the event), and the enriched JSON.
//!
//! Records are read forever, so every layout ever written stays readable:
//!
//! ```text
//! v2 (written now):
//!   version u8 = 2 | marker u8 = 0x40 | flags u8 (bit 0: indexed) | fields u8
//!   | tenant_len u16 | tenant | fields × offset u16 | JSON
//! v1 (unversioned, before 0.1.0 shipped version bytes):
//!   tenant_len u16 (bit 15: indexed) | tenant | JSON | [10 × offset u16 when indexed]
//! ```
//! All integers little endian. A v1 record's second byte is the high byte of a tenant length
//! of at most 256 bytes, with the indexed flag: `0x00`, `0x01`, `0x80` or `0x81`, never with
//! bit `0x40` — that bit marks a versioned record. Each version names the fields its offsets
//! belong to ([`fields_of`]); an offset is where the field's value starts in the JSON (0: not
//! present). Adding a mapped field means a new version with its own list: old records keep
//! being read with theirs.

use bytes::Bytes;
use thoth_event::{EnrichedView, FieldIndex, Layout, ViewError};

use crate::Entry;

/// The record version this build writes.
pub const RECORD_VERSION: u8 = 2;
/// Set in the second byte of every versioned record; never set there in a v1 record.
const VERSIONED: u8 = 0x40;
/// Set in a v1 record's tenant length when the record ends with a field index.
const V1_INDEXED: u16 = 0x8000;
/// Flag of a v2 record whose offsets are filled in.
const INDEXED: u8 = 1;
/// Bytes of a v2 record before the tenant id.
const V2_HEADER: usize = 6;

/// The mapped fields whose offsets records of `version` carry, in their order.
pub fn fields_of(version: u8) -> Option<&'static [&'static str]> {
    const V1_AND_V2: [&str; 10] = [
        "type",
        "event_id",
        "time",
        "tenant_id",
        "endpoint_id",
        "hostname",
        "user",
        "risk",
        "decision",
        "context",
    ];
    match version {
        1 | 2 => Some(&V1_AND_V2),
        _ => None,
    }
}

/// Writes records into a frame, keeping the [`Layout`] the JSON writer fills in (reused from
/// record to record, so writing one allocates nothing).
#[derive(Debug, Default)]
pub struct RecordWriter {
    layout: Layout,
}

impl RecordWriter {
    /// Appends one record of `tenant_id` to `out`: `json` writes the JSON at the end of the
    /// buffer it is given and records in the layout where its members are (it may leave the
    /// layout empty: the record then has no index). An error leaves `out` as it was.
    ///
    /// # Panics
    /// When `tenant_id` is longer than 256 bytes (the config and ingest refuse such ids).
    pub fn write<E>(
        &mut self,
        out: &mut Vec<u8>,
        tenant_id: &str,
        json: impl FnOnce(&mut Vec<u8>, &mut Layout) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = out.len();
        let fields = FieldIndex::FIELDS.len();
        let tenant_len = u16::try_from(tenant_id.len())
            .ok()
            .filter(|len| *len <= 256)
            .expect("tenant ids are at most 256 bytes");
        out.extend_from_slice(&[RECORD_VERSION, VERSIONED, 0, fields as u8]);
        out.extend_from_slice(&tenant_len.to_le_bytes());
        out.extend_from_slice(tenant_id.as_bytes());
        let index_at = out.len();
        out.resize(index_at + 2 * fields, 0);
        let json_start = out.len();
        self.layout.begin(json_start);
        if let Err(e) = json(out, &mut self.layout) {
            out.truncate(start);
            return Err(e);
        }
        if self.layout.is_empty() {
            return Ok(());
        }
        if let Some(index) = self.layout.field_index(&out[json_start..]) {
            let mut encoded = Vec::with_capacity(2 * fields);
            index.encode(&mut encoded);
            out[index_at..json_start].copy_from_slice(&encoded);
            out[start + 2] |= INDEXED;
        }
        Ok(())
    }

    /// Appends one record of `tenant_id` holding a copy of `json`, whose members `layout`
    /// recorded (from the start of `json`).
    pub fn write_copy(&mut self, out: &mut Vec<u8>, tenant_id: &str, json: &[u8], layout: &Layout) {
        let copied = self.write(out, tenant_id, |buf, own| {
            buf.extend_from_slice(json);
            own.clone_from(layout);
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = copied;
    }
}

/// A decoded record, borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub tenant_id: &'a str,
    pub json: &'a [u8],
    /// Where the mapped fields are in `json`, when the record has an index.
    pub fields: Option<FieldIndex>,
}

/// Decodes a record of any released version; `None` when the bytes are not a record (a
/// corrupt or foreign entry, or a version newer than this build).
pub fn decode(bytes: &[u8]) -> Option<RecordRef<'_>> {
    match bytes.get(1)? {
        b if b & VERSIONED != 0 => decode_versioned(bytes),
        _ => decode_v1(bytes),
    }
}

fn decode_versioned(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let header = bytes.get(..V2_HEADER)?;
    let (version, flags, count) = (header[0], header[2], usize::from(header[3]));
    let names = fields_of(version).filter(|_| version >= 2)?;
    if count != names.len() {
        return None;
    }
    let tenant_len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let tenant_end = V2_HEADER + tenant_len;
    let tenant = std::str::from_utf8(bytes.get(V2_HEADER..tenant_end)?).ok()?;
    let index = bytes.get(tenant_end..tenant_end + 2 * count)?;
    let json = &bytes[tenant_end + 2 * count..];
    let fields = if flags & INDEXED != 0 {
        Some(FieldIndex::decode_named(names, index)?)
    } else {
        None
    };
    Some(RecordRef {
        tenant_id: tenant,
        json,
        fields,
    })
}

fn decode_v1(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let header = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?);
    let len = usize::from(header & !V1_INDEXED);
    let tenant = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    let rest = &bytes[2 + len..];
    let (json, fields) = if header & V1_INDEXED != 0 {
        let names = fields_of(1).expect("v1 has a field list");
        let split = rest.len().checked_sub(2 * names.len())?;
        (
            &rest[..split],
            Some(FieldIndex::decode_named(names, &rest[split..])?),
        )
    } else {
        (rest, None)
    };
    Some(RecordRef {
        tenant_id: tenant,
        json,
        fields,
    })
}

/// An enriched event as a sink receives it: its tenant and JSON (sharing the WAL frame's
/// buffer) and, when the record had one, the index of its mapped fields. Destinations read
/// the fields through [`view`](Self::view), which uses the index when there is one.
#[derive(Debug, Clone)]
pub struct EnrichedRecord {
    pub tenant_id: String,
    pub json: Bytes,
    fields: Option<FieldIndex>,
}

impl EnrichedRecord {
    /// An event without an index (a dead letter handed back, a remap's output, a canary):
    /// its view is read by scanning the JSON.
    pub fn new(tenant_id: impl Into<String>, json: Bytes) -> Self {
        EnrichedRecord {
            tenant_id: tenant_id.into(),
            json,
            fields: None,
        }
    }

    /// The record of a WAL entry; `None` when the entry is not a readable record.
    pub fn from_entry(entry: &Entry) -> Option<Self> {
        let rec = decode(&entry.data)?;
        Some(EnrichedRecord {
            tenant_id: rec.tenant_id.to_string(),
            json: entry.data.slice_ref(rec.json),
            fields: rec.fields,
        })
    }

    /// The same event with other JSON (a sink's remap): the index no longer applies.
    pub fn with_json(&self, json: Bytes) -> Self {
        EnrichedRecord::new(self.tenant_id.clone(), json)
    }

    /// The mapped fields, through the index when the record has one.
    pub fn view(&self) -> Result<EnrichedView<'_>, ViewError> {
        EnrichedView::read(&self.json, self.fields.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(out: &mut Vec<u8>, tenant: &str, json: &[u8]) {
        RecordWriter::default()
            .write(out, tenant, |buf, _| {
                buf.extend_from_slice(json);
                Ok::<(), ()>(())
            })
            .unwrap();
    }

    #[test]
    fn the_written_version_names_the_fields_this_build_indexes() {
        // Changing FieldIndex::FIELDS without a new record version would misread old records.
        assert_eq!(fields_of(RECORD_VERSION), Some(&FieldIndex::FIELDS[..]));
    }

    #[test]
    fn round_trip_without_an_index() {
        let mut buf = vec![0xAA]; // records are written after other bytes of a frame
        plain(&mut buf, "acme", b"{}");
        assert_eq!(buf[1], RECORD_VERSION);
        assert_eq!(
            decode(&buf[1..]),
            Some(RecordRef {
                tenant_id: "acme",
                json: b"{}",
                fields: None,
            })
        );
        assert_eq!(decode(&[9, 0, b'a']), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn an_indexed_record_gives_back_its_json_and_index() {
        let json = br#"{"type":"decision","risk":"high"}"#;
        let mut buf = vec![0xAA];
        RecordWriter::default()
            .write(&mut buf, "acme", |out, layout| {
                let at = out.len();
                out.extend_from_slice(json);
                layout.push_written(&out[..at + 18], at + 2, at + 8);
                layout.push_written(&out[..at + 32], at + 20, at + 26);
                Ok::<(), ()>(())
            })
            .unwrap();
        let rec = decode(&buf[1..]).unwrap();
        assert_eq!((rec.tenant_id, rec.json), ("acme", &json[..]));
        let index = rec.fields.unwrap();
        assert_eq!(index.value(rec.json, 0), Ok(Some(&br#""decision""#[..])));
        assert_eq!(index.value(rec.json, 7), Ok(Some(&br#""high""#[..])));
    }

    #[test]
    fn a_failed_write_leaves_the_buffer_as_it_was() {
        let mut buf = b"before".to_vec();
        let r = RecordWriter::default().write(&mut buf, "acme", |out, _| {
            out.extend_from_slice(b"{\"half");
            Err("refused")
        });
        assert_eq!(r, Err("refused"));
        assert_eq!(buf, b"before");
    }

    #[test]
    fn unknown_versions_and_short_records_are_unreadable_not_misread() {
        let mut buf = Vec::new();
        plain(&mut buf, "acme", b"{}");
        let mut future = buf.clone();
        future[0] = RECORD_VERSION + 1;
        assert_eq!(decode(&future), None, "a newer version is not guessed at");
        for cut in 0..V2_HEADER + 4 + 20 {
            assert_eq!(decode(&buf[..cut]), None, "cut at {cut}");
        }
        // A v1 record flagged indexed but too short for its index.
        let mut short = vec![4, 0x80];
        short.extend_from_slice(b"acme{}");
        assert_eq!(decode(&short), None);
    }

    /// Records written by earlier releases, committed as they were written, read the same
    /// forever.
    #[test]
    fn reads_the_released_formats() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/record-v1");
        let json = std::fs::read(format!("{fixtures}/indexed.json")).unwrap();
        let indexed = std::fs::read(format!("{fixtures}/indexed.bin")).unwrap();
        let rec = decode(&indexed).expect("a v1 indexed record");
        assert_eq!((rec.tenant_id, rec.json), ("acme", &json[..]));
        let by_index = EnrichedView::read(rec.json, rec.fields.as_ref()).unwrap();
        let by_scan = EnrichedView::parse(rec.json).unwrap();
        assert!(rec.fields.is_some());
        assert_eq!(format!("{by_index:?}"), format!("{by_scan:?}"));
        assert_eq!(by_index.risk.as_deref(), Some("high"));
        assert_eq!(by_index.endpoint(), Some("ep-1"));

        let plain = std::fs::read(format!("{fixtures}/plain.bin")).unwrap();
        let rec = decode(&plain).expect("a v1 record without an index");
        assert_eq!(rec.tenant_id, "globex");
        assert_eq!(rec.fields, None);
        assert_eq!(
            EnrichedView::parse(rec.json).unwrap().endpoint(),
            Some("ep-9")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Some(rec) = decode(&bytes) {
                let _ = EnrichedView::read(rec.json, rec.fields.as_ref());
            }
        }
    }
}
