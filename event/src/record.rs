//! The WAL record of one enriched event: the tenant id (so routing by tenant needs no JSON
//! parse), the enriched JSON, and where the fields sinks map are in it (so a sink reads them
//! without scanning the event).
//!
//! Layout: `u16` tenant length (little endian; the high bit set when a field index follows the
//! JSON), tenant bytes, JSON bytes, then the [`FieldIndex`] when flagged. Records without the
//! flag (no index, or written before it existed) read the same way without it.

use crate::layout::{FieldIndex, Layout};

/// Set in the tenant length when the record ends with a field index.
const INDEXED: u16 = 0x8000;

/// Writes the part before the JSON and returns where the record starts; the caller appends
/// the JSON, then may [`finish`] the record with its field index (a record left unfinished
/// has none).
pub fn encode_header(out: &mut Vec<u8>, tenant_id: &str) -> usize {
    let start = out.len();
    let len = u16::try_from(tenant_id.len())
        .ok()
        .filter(|len| len & INDEXED == 0)
        .expect("tenant ids are at most 256 bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(tenant_id.as_bytes());
    start
}

/// Ends the record started at `record_start` whose JSON was written from `json_start`, with
/// `layout` (recorded while writing that JSON): appends the field index and flags it. A
/// record whose layout is unknown (empty) or too large for an index is left without one.
pub fn finish(out: &mut Vec<u8>, record_start: usize, json_start: usize, layout: &Layout) {
    if layout.is_empty() {
        return;
    }
    let Some(index) = layout.field_index(&out[json_start..]) else {
        return;
    };
    index.encode(out);
    out[record_start + 1] |= (INDEXED >> 8) as u8;
}

/// A decoded record, borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub tenant_id: &'a str,
    pub json: &'a [u8],
    /// Where the mapped fields are in `json`, when the record has an index.
    pub fields: Option<FieldIndex>,
}

/// Decodes a record; `None` when the bytes are not a record (a corrupt or foreign entry).
pub fn decode(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let header = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?);
    let len = usize::from(header & !INDEXED);
    let tenant = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    let rest = &bytes[2 + len..];
    let (json, fields) = if header & INDEXED != 0 {
        let split = rest.len().checked_sub(FieldIndex::ENCODED_LEN)?;
        (&rest[..split], Some(FieldIndex::decode(&rest[split..])?))
    } else {
        (rest, None)
    };
    Some(RecordRef {
        tenant_id: tenant,
        json,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record without a field index.
    fn encode(out: &mut Vec<u8>, tenant_id: &str, json: &[u8]) {
        encode_header(out, tenant_id);
        out.extend_from_slice(json);
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, "acme", b"{}");
        assert_eq!(
            decode(&buf),
            Some(RecordRef {
                tenant_id: "acme",
                json: b"{}",
                fields: None,
            })
        );
        assert_eq!(decode(&[9, 0, b'a']), None);
    }

    #[test]
    fn an_indexed_record_gives_back_its_json_and_index() {
        let json = br#"{"type":"decision","risk":"high"}"#;
        let mut buf = vec![0xAA]; // records are written after other bytes of a frame
        let start = encode_header(&mut buf, "acme");
        let json_start = buf.len();
        buf.extend_from_slice(json);
        let mut layout = Layout::default();
        layout.begin(json_start);
        layout.push_written(&buf[..json_start + 18], json_start + 2, json_start + 8);
        layout.push_written(&buf[..json_start + 32], json_start + 20, json_start + 26);
        finish(&mut buf, start, json_start, &layout);
        let rec = decode(&buf[start..]).unwrap();
        assert_eq!((rec.tenant_id, rec.json), ("acme", &json[..]));
        let index = rec.fields.unwrap();
        assert_eq!(index.value(rec.json, 0), Ok(Some(&br#""decision""#[..])));
        assert_eq!(index.value(rec.json, 7), Ok(Some(&br#""high""#[..])));
        // A flagged record too short for its index is unreadable, not misread.
        let mut short = Vec::new();
        encode(&mut short, "acme", b"{}");
        short[1] |= 0x80;
        assert_eq!(decode(&short), None);
    }

    #[test]
    fn a_record_without_a_layout_has_no_index() {
        let mut buf = Vec::new();
        let start = encode_header(&mut buf, "acme");
        buf.extend_from_slice(b"{}");
        finish(&mut buf, start, 6, &Layout::default());
        assert_eq!(decode(&buf).unwrap().fields, None);
    }
}
