//! The WAL record of one enriched event: the tenant id (so routing by tenant needs no JSON
//! parse) followed by the enriched JSON.
//!
//! Layout: `u16` tenant length (little endian), tenant bytes, JSON bytes.

/// Encodes a record into `out`.
pub fn encode(out: &mut Vec<u8>, tenant_id: &str, json: &[u8]) {
    encode_header(out, tenant_id);
    out.extend_from_slice(json);
}

/// Writes the part before the JSON; the caller appends the JSON itself.
pub fn encode_header(out: &mut Vec<u8>, tenant_id: &str) {
    let len = u16::try_from(tenant_id.len()).expect("tenant ids are at most 256 bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(tenant_id.as_bytes());
}

/// A decoded record, borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub tenant_id: &'a str,
    pub json: &'a [u8],
}

/// Decodes a record; `None` when the bytes are not a record (a corrupt or foreign entry).
pub fn decode(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let tenant = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    Some(RecordRef {
        tenant_id: tenant,
        json: &bytes[2 + len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, "acme", b"{}");
        assert_eq!(
            decode(&buf),
            Some(RecordRef {
                tenant_id: "acme",
                json: b"{}"
            })
        );
        assert_eq!(decode(&[9, 0, b'a']), None);
    }
}
