//! The on-disk frame: the events of one ingest batch, checksummed as a unit.
//!
//! ```text
//! magic u32 | payload_len u32 | crc32 u32 | first_seq u64 | count u32 | appended_ms u64 | payload
//! payload = count × (record_len u32 | record bytes)        (all integers little endian)
//! record  = one enriched event, versioned (crate::record)
//! ```
//! `appended_ms` is the append time (Unix milliseconds), for queue age and delivery latency.
//! The CRC (IEEE CRC-32, `crc32fast`) covers everything after itself. The magic
//! lets recovery find the next frame after a corrupt one.

use crc32fast::Hasher;

pub(crate) const MAGIC: u32 = 0x4854_4F54; // "TOTH" read little endian
pub(crate) const HEADER_LEN: usize = 32;

/// The events of one append, encoded but not yet numbered. Build it on the caller's thread so
/// the single writer only adds a header.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    payload: Vec<u8>,
    count: u32,
}

impl FrameBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record.
    pub fn push(&mut self, record: &[u8]) {
        let len = u32::try_from(record.len()).expect("records are limited far below 4 GiB");
        self.payload.extend_from_slice(&len.to_le_bytes());
        self.payload.extend_from_slice(record);
        self.count += 1;
    }

    /// A frame with room for `bytes` of records, so a batch is not copied while it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        FrameBuilder {
            payload: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Adds one record written in place by `write`; when `write` fails, the frame is left as
    /// it was.
    pub fn try_push_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.payload.len();
        let mut result = Ok(());
        self.push_with(|buf| result = write(buf));
        if result.is_err() {
            self.payload.truncate(start);
            self.count -= 1;
        }
        result
    }

    /// Adds one record written in place by `write`, saving a copy.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.payload.len();
        self.payload.extend_from_slice(&[0; 4]);
        write(&mut self.payload);
        let len = u32::try_from(self.payload.len() - start - 4).expect("record under 4 GiB");
        self.payload[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    /// The payload bytes from `start` (a length the payload had, e.g. seen by a writer).
    pub fn written_since(&self, start: usize) -> &[u8] {
        self.payload.get(start..).unwrap_or_default()
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the frame takes on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the numbered frame to `out`.
    pub(crate) fn encode_into(&self, first_seq: u64, appended_ms: u64, out: &mut Vec<u8>) {
        let mut h = Hasher::new();
        h.update(&first_seq.to_le_bytes());
        h.update(&self.count.to_le_bytes());
        h.update(&appended_ms.to_le_bytes());
        h.update(&self.payload);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(&first_seq.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&appended_ms.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// A valid frame found in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub offset: usize,
    pub first_seq: u64,
    pub count: u32,
    pub appended_ms: u64,
    /// Total bytes including the header.
    pub len: usize,
}

impl FrameMeta {
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Checks the frame starting at `offset`: `Some` when it is whole and its CRC matches.
pub(crate) fn frame_at(buf: &[u8], offset: usize) -> Option<FrameMeta> {
    let b = buf.get(offset..)?;
    if b.len() < HEADER_LEN || u32_at(b, 0) != MAGIC {
        return None;
    }
    let payload_len = u32_at(b, 4) as usize;
    let len = HEADER_LEN.checked_add(payload_len)?;
    if b.len() < len {
        return None;
    }
    let mut h = Hasher::new();
    h.update(&b[12..len]);
    if h.finalize() != u32_at(b, 8) {
        return None;
    }
    Some(FrameMeta {
        offset,
        first_seq: u64::from_le_bytes(b[12..20].try_into().unwrap()),
        count: u32_at(b, 20),
        appended_ms: u64::from_le_bytes(b[24..32].try_into().unwrap()),
        len,
    })
}

/// The records of a valid frame, in order.
pub(crate) fn records<'a>(buf: &'a [u8], frame: &FrameMeta) -> impl Iterator<Item = &'a [u8]> + 'a {
    let payload = &buf[frame.offset + HEADER_LEN..frame.offset + frame.len];
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = u32_at(payload, at) as usize;
        let record = payload.get(at + 4..at + 4 + len)?;
        at += 4 + len;
        Some(record)
    })
    .take(frame.count as usize)
}

/// The next valid frame at or after `from`, searching byte by byte for the magic.
pub(crate) fn next_valid_frame(buf: &[u8], from: usize) -> Option<FrameMeta> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    while at + HEADER_LEN <= buf.len() {
        let rel = buf[at..].windows(4).position(|w| w == magic)?;
        at += rel;
        if let Some(f) = frame_at(buf, at) {
            return Some(f);
        }
        at += 1;
    }
    None
}

/// What a scan of one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    pub frames: Vec<FrameMeta>,
    /// Byte ranges skipped between valid frames (corruption in the middle).
    pub corrupt: Vec<std::ops::Range<usize>>,
    /// Where the last valid frame ends; bytes after it are a torn or corrupt tail.
    pub valid_end: usize,
}

/// Scans a segment's bytes: valid frames, corrupt ranges between them, and the end of the
/// last valid frame.
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < buf.len() {
        if let Some(f) = frame_at(buf, at) {
            scan.frames.push(f);
            at += f.len;
            scan.valid_end = at;
            continue;
        }
        match next_valid_frame(buf, at + 1) {
            Some(f) => {
                scan.corrupt.push(at..f.offset);
                at = f.offset;
            }
            None => break,
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_frame_as_it_was() {
        let mut b = FrameBuilder::with_capacity(64);
        b.push(b"one");
        let before = (b.payload.clone(), b.count());
        let failed: Result<(), &str> = b.try_push_with(|buf| {
            buf.extend_from_slice(b"half a record");
            Err("refused")
        });
        assert_eq!(failed, Err("refused"));
        assert_eq!((b.payload.clone(), b.count()), before);
        let mut start = 0;
        b.try_push_with(|buf| {
            start = buf.len();
            buf.extend_from_slice(b"two");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!((b.written_since(start), b.count()), (&b"two"[..], 2));
    }

    fn frame(seq: u64, records: &[&[u8]]) -> Vec<u8> {
        let mut b = FrameBuilder::new();
        for r in records {
            b.push(r);
        }
        let mut out = Vec::new();
        b.encode_into(seq, 0, &mut out);
        out
    }

    #[test]
    fn round_trip() {
        let buf = frame(7, &[b"a", b"", b"ccc"]);
        let f = frame_at(&buf, 0).unwrap();
        assert_eq!((f.first_seq, f.count, f.len), (7, 3, buf.len()));
        let recs: Vec<&[u8]> = records(&buf, &f).collect();
        assert_eq!(recs, vec![&b"a"[..], b"", b"ccc"]);
    }

    #[test]
    fn push_with_matches_push() {
        let mut a = FrameBuilder::new();
        a.push(b"hello");
        let mut b = FrameBuilder::new();
        b.push_with(|v| v.extend_from_slice(b"hello"));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode_into(1, 5, &mut x);
        b.encode_into(1, 5, &mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn scan_skips_corruption_in_the_middle_and_finds_the_torn_tail() {
        let mut buf = frame(0, &[b"one"]);
        let second = buf.len();
        buf.extend(frame(1, &[b"two"]));
        buf.extend(frame(2, &[b"three"]));
        buf[second + HEADER_LEN + 5] ^= 0xff; // flip a payload byte of frame 1
        let whole = buf.len();
        let tail = frame(3, &[b"four"]);
        buf.extend(&tail[..tail.len() - 2]); // torn write
        let s = scan(&buf);
        let seqs: Vec<u64> = s.frames.iter().map(|f| f.first_seq).collect();
        assert_eq!(seqs, vec![0, 2]);
        assert_eq!(s.corrupt.len(), 1);
        assert_eq!(s.corrupt[0].start, second);
        assert_eq!(s.valid_end, whole);
    }
}
