//! Where the top-level members of an object the gateway writes are, recorded while it writes
//! them (enrichment, the global remap), so the next stage finds a member without scanning the
//! JSON again. The WAL record keeps the positions of the fields sinks map as a [`FieldIndex`].

use std::ops::Range;

use crate::scan::{value_at, RawKey};

/// One member, as byte offsets from the object's `{`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// The key's text between its quotes.
    key: (u32, u32),
    escaped: bool,
    value: (u32, u32),
}

/// The top-level members of one JSON object, in order.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// Where the object's `{` is in the buffer being written.
    base: usize,
    spans: Vec<Span>,
}

fn relative(range: Range<usize>, base: usize) -> (u32, u32) {
    // Events are limited far below 4 GiB (ingest's event size limit).
    ((range.start - base) as u32, (range.end - base) as u32)
}

impl Layout {
    /// Starts recording the object whose `{` is at `base` in the buffer being written.
    pub fn begin(&mut self, base: usize) {
        self.base = base;
        self.spans.clear();
    }

    /// Forgets every member: the object's layout is unknown (readers scan it).
    pub fn clear(&mut self) {
        self.spans.clear();
    }

    /// Records a member whose key text (between its quotes) and value are at these positions
    /// of the buffer being written.
    pub fn push(&mut self, key: Range<usize>, escaped: bool, value: Range<usize>) {
        self.spans.push(Span {
            key: relative(key, self.base),
            escaped,
            value: relative(value, self.base),
        });
    }

    /// Records a member written at the end of `out`: its key text (between quotes) started at
    /// `key_start` and its value at `value_start`.
    pub fn push_written(&mut self, out: &[u8], key_start: usize, value_start: usize) {
        let key_end = value_start - 2; // `":` between the key's text and the value
        let escaped = out[key_start..key_end].contains(&b'\\');
        self.push(key_start..key_end, escaped, value_start..out.len());
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The members of `json`, the object this layout was recorded for, as
    /// [`crate::scan::object_members`] would find them.
    pub fn members<'a>(&'a self, json: &'a [u8]) -> impl Iterator<Item = (RawKey<'a>, &'a [u8])> {
        self.spans.iter().map_while(move |s| {
            let text = json.get(s.key.0 as usize..s.key.1 as usize)?;
            let value = json.get(s.value.0 as usize..s.value.1 as usize)?;
            Some((
                RawKey {
                    text,
                    escaped: s.escaped,
                },
                value,
            ))
        })
    }

    /// Where the fields of [`FieldIndex::FIELDS`] are in `json` (the object this layout was
    /// recorded for); `None` when a value starts beyond what the index can hold (64 KiB).
    pub fn field_index(&self, json: &[u8]) -> Option<FieldIndex> {
        let mut index = FieldIndex::default();
        for (key, value) in self.members(json) {
            let name = key.bytes();
            let Some(slot) = FieldIndex::FIELDS
                .iter()
                .position(|f| f.as_bytes() == name.as_ref())
            else {
                continue;
            };
            let offset = value.as_ptr() as usize - json.as_ptr() as usize;
            index.offsets[slot] = u16::try_from(offset).ok()?;
        }
        Some(index)
    }
}

/// Where the fields sinks map ([`crate::EnrichedView`]) start in an enriched event's JSON:
/// each value's byte offset from the object's `{`, 0 when the event has no such member.
/// Kept with the event's WAL record (`thoth_wal::record`, whose versions fix the list).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FieldIndex {
    offsets: [u16; FieldIndex::FIELDS.len()],
}

impl FieldIndex {
    /// The indexed top-level fields, in the index's order. WAL records carry offsets in this
    /// order: changing it means a new record version (`thoth_wal::record::fields_of`).
    pub const FIELDS: [&'static str; 10] = [
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

    /// Appends the index (little-endian `u16` offsets) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for offset in self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }

    /// An index read from `bytes`: one `u16` offset for each of `names` (the field list of
    /// the record version that wrote it), placed in this build's slots by name; names this
    /// build does not map are skipped. `None` when the lengths disagree.
    pub fn decode_named(names: &[&str], bytes: &[u8]) -> Option<FieldIndex> {
        if bytes.len() != 2 * names.len() {
            return None;
        }
        let mut index = FieldIndex::default();
        for (name, pair) in names.iter().zip(bytes.chunks_exact(2)) {
            if let Some(slot) = Self::FIELDS.iter().position(|f| f == name) {
                index.offsets[slot] = u16::from_le_bytes([pair[0], pair[1]]);
            }
        }
        Some(index)
    }

    pub fn value<'a>(
        &self,
        json: &'a [u8],
        slot: usize,
    ) -> Result<Option<&'a [u8]>, IndexMismatch> {
        let offset = match self.offsets[slot] {
            0 => return Ok(None),
            offset => offset as usize,
        };
        match json.get(offset) {
            Some(b'{' | b'[') => Ok(Some(&json[offset..])),
            _ => value_at(json, offset).map(Some).ok_or(IndexMismatch),
        }
    }
}

/// A field index applied to JSON it was not made for (no value where it points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the field index does not fit the event's JSON")]
pub struct IndexMismatch;

/// The layout of `json` found by scanning it (for tests to compare with a recorded one).
#[cfg(test)]
pub(crate) fn layout_by_scan(json: &[u8]) -> Layout {
    use crate::scan::object_members;
    {
        let mut layout = Layout::default();
        layout.begin(0);
        for (key, value) in object_members(json).unwrap() {
            let key_start = key.text.as_ptr() as usize - json.as_ptr() as usize;
            let value_start = value.as_ptr() as usize - json.as_ptr() as usize;
            layout.push(
                key_start..key_start + key.text.len(),
                key.escaped,
                value_start..value_start + value.len(),
            );
        }
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::object_members;

    #[test]
    fn members_come_back_as_recorded() {
        let json = br#"{"a":1,"b\"":{"c":[1]},"risk":"high"}"#;
        let layout = layout_by_scan(json);
        let by_layout: Vec<_> = layout.members(json).collect();
        let by_scan: Vec<_> = object_members(json).unwrap().collect();
        assert_eq!(by_layout, by_scan);
    }

    #[test]
    fn the_index_finds_the_mapped_fields_and_round_trips() {
        let json = br#"{"x":{"risk":"no"},"ris\u006b":"high","context":{"fleet":null}}"#;
        let index = layout_by_scan(json).field_index(json).unwrap();
        let risk = FieldIndex::FIELDS
            .iter()
            .position(|f| *f == "risk")
            .unwrap();
        let context = FieldIndex::FIELDS.len() - 1;
        assert_eq!(index.value(json, risk), Ok(Some(&br#""high""#[..])));
        assert_eq!(
            index.value(json, context),
            Ok(Some(&br#"{"fleet":null}}"#[..])) // with the rest of the JSON
        );
        assert_eq!(index.value(json, 0), Ok(None));
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        assert_eq!(
            FieldIndex::decode_named(&FieldIndex::FIELDS, &bytes),
            Some(index)
        );
        assert_eq!(
            FieldIndex::decode_named(&FieldIndex::FIELDS, &bytes[1..]),
            None
        );
        // An index that does not fit the JSON is an error, not a panic.
        assert_eq!(index.value(b"{}", risk), Err(IndexMismatch));
    }

    #[test]
    fn offsets_past_64_kib_give_no_index() {
        let json = format!(r#"{{"pad":"{}","risk":"low"}}"#, "x".repeat(70_000));
        assert_eq!(
            layout_by_scan(json.as_bytes()).field_index(json.as_bytes()),
            None
        );
    }
}
