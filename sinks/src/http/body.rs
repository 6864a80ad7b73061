//! Request bodies: encoded events put together with the destination's framing, gzip-compressed
//! as they are assembled, and groups of events that each fit the destination's size limit.

use std::io::Write;

use bytes::Bytes;

use crate::destination::Framing;

/// A request body: what is sent (compressed or not) and the plain body when the destination
/// reads it (a signature covers it), else empty.
#[derive(Debug)]
pub struct Body {
    pub sent: Bytes,
    pub plain: Bytes,
}

/// The body of `encoded` events (each in up to three parts sent one after the other) in
/// `framing`; `gzip` compresses it, `keep_plain` keeps the uncompressed body too.
pub fn assemble<'a>(
    framing: Framing,
    encoded: impl Iterator<Item = [&'a [u8]; 3]> + Clone,
    gzip: bool,
    keep_plain: bool,
    capacity: usize,
) -> Body {
    let parts = || {
        let events = encoded.clone().enumerate().flat_map(|(i, [a, b, c])| {
            let separator = if i > 0 { framing.separator } else { &b""[..] };
            [separator, a, b, c]
        });
        std::iter::once(framing.prefix)
            .chain(events)
            .chain(std::iter::once(framing.suffix))
    };
    if gzip && !keep_plain {
        // Compressed as it is assembled: no uncompressed copy of the batch.
        let mut gz = Gzip::with_capacity(capacity / 4);
        parts()
            .filter(|part| !part.is_empty())
            .for_each(|part| gz.write(part));
        return Body {
            sent: Bytes::from(gz.finish()),
            plain: Bytes::new(),
        };
    }
    let mut plain = Vec::with_capacity(capacity + framing.prefix.len() + framing.suffix.len());
    parts().for_each(|part| plain.extend_from_slice(part));
    let plain = Bytes::from(plain);
    let sent = if gzip {
        Bytes::from(gzip_bytes(&plain))
    } else {
        plain.clone() // shares the buffer
    };
    Body { sent, plain }
}

/// Groups of items (in order) whose framed bodies stay within `limit` bytes (`None`: one
/// group). An item larger than the limit alone is a group of its own (the destination then
/// rejects it as too large).
pub fn split_to_fit<T>(
    items: Vec<T>,
    len: impl Fn(&T) -> usize,
    framing: Framing,
    limit: Option<usize>,
) -> Vec<Vec<T>> {
    let Some(limit) = limit else {
        return vec![items];
    };
    let overhead = framing.prefix.len() + framing.suffix.len();
    let mut groups = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut size = overhead;
    for item in items {
        let separator = if current.is_empty() {
            0
        } else {
            framing.separator.len()
        };
        if !current.is_empty() && size + separator + len(&item) > limit {
            groups.push(std::mem::take(&mut current));
            size = overhead + len(&item);
        } else {
            size += separator + len(&item);
        }
        current.push(item);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// A gzip member (RFC 1952) written piece by piece: raw deflate at the fastest level framed
/// by hand, so the CRC-32 is crc32fast's (SIMD), not the deflate backend's portable one.
pub struct Gzip {
    deflate: flate2::write::DeflateEncoder<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u32,
}

thread_local! {
    /// A finished encoder, kept for the next body on this thread: a deflate state is some
    /// 300 KB allocated and zeroed, once per request otherwise. One per thread at most.
    static SPARE_DEFLATE: std::cell::Cell<Option<flate2::write::DeflateEncoder<Vec<u8>>>> =
        const { std::cell::Cell::new(None) };
}

impl Gzip {
    pub fn with_capacity(bytes: usize) -> Self {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=4 (fastest) OS=255 (unknown)
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
        let mut out = Vec::with_capacity(bytes + 64);
        out.extend_from_slice(&HEADER);
        let deflate = match SPARE_DEFLATE.take() {
            Some(mut spare) => {
                // Resetting a finished encoder only swaps its output: nothing to lose.
                let _ = spare.reset(out);
                spare
            }
            None => flate2::write::DeflateEncoder::new(out, flate2::Compression::fast()),
        };
        Gzip {
            deflate,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    pub fn write(&mut self, part: &[u8]) {
        self.deflate
            .write_all(part)
            .expect("writing to a Vec cannot fail");
        self.crc.update(part);
        self.len = self.len.wrapping_add(part.len() as u32); // ISIZE: the length mod 2^32
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.deflate
            .try_finish()
            .expect("writing to a Vec cannot fail");
        let mut out = self
            .deflate
            .reset(Vec::new())
            .expect("a finished encoder resets without writing");
        SPARE_DEFLATE.set(Some(self.deflate));
        out.extend_from_slice(&self.crc.finalize().to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }
}

/// `body` as one gzip member.
pub fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::with_capacity(body.len() / 4);
    gz.write(body);
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut decoded)
            .expect("a valid gzip member: header, deflate data, CRC-32 and length");
        decoded
    }

    #[test]
    fn gzip_bodies_decode_to_what_was_sent() {
        let big: Vec<u8> = (0..1_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for body in [&b""[..], b"{\"event\":1}", &big] {
            assert_eq!(gunzip(&gzip_bytes(body)), body);
        }
        // Written in pieces, the same member.
        let mut gz = Gzip::with_capacity(0);
        for part in big.chunks(7777) {
            gz.write(part);
        }
        assert_eq!(gunzip(&gz.finish()), big);
    }

    #[test]
    fn a_reused_encoder_starts_each_member_afresh() {
        // The second and later bodies on a thread take the first one's deflate state: each
        // must be the member a fresh encoder (a new thread's) writes, whatever came before
        // (a half-written member abandoned, a large body, an empty one).
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let fresh = |body: &[u8]| {
            let body = body.to_vec();
            std::thread::spawn(move || gzip_bytes(&body))
                .join()
                .unwrap()
        };
        let mut abandoned = Gzip::with_capacity(0);
        abandoned.write(&big);
        drop(abandoned);
        for body in [
            &big[..],
            b"",
            b"{\"event\":2}",
            &big[1000..],
            b"{\"event\":2}",
        ] {
            let member = gzip_bytes(body);
            assert_eq!(gunzip(&member), body);
            assert_eq!(member, fresh(body), "the bytes of a fresh encoder");
        }
    }

    #[test]
    fn bodies_are_framed_the_same_compressed_or_not() {
        // An event in three parts (an envelope around a record's JSON), in one, in two.
        let events: Vec<[&[u8]; 3]> = vec![
            [b"{\"a\"", b":", b"1}"],
            [b"{\"b\":2}", b"", b""],
            [b"", b"{\"c\":", b"3}"],
        ];
        let plain = assemble(Framing::JSON_ARRAY, events.iter().copied(), false, false, 0);
        assert_eq!(&plain.sent[..], b"[{\"a\":1},{\"b\":2},{\"c\":3}]");
        assert_eq!(plain.plain, plain.sent);
        let streamed = assemble(Framing::JSON_ARRAY, events.iter().copied(), true, false, 0);
        assert_eq!(gunzip(&streamed.sent), &plain.sent[..]);
        assert!(streamed.plain.is_empty(), "no plain copy unless asked for");
        let signed = assemble(Framing::CONCATENATED, events.iter().copied(), true, true, 0);
        assert_eq!(&signed.plain[..], b"{\"a\":1}{\"b\":2}{\"c\":3}");
        assert_eq!(gunzip(&signed.sent), &signed.plain[..]);
        let empty = assemble(Framing::JSON_ARRAY, std::iter::empty(), false, false, 0);
        assert_eq!(&empty.sent[..], b"[]");
    }

    #[test]
    fn groups_fit_the_limit_with_framing() {
        let lens = |groups: &[Vec<usize>]| groups.iter().map(Vec::len).collect::<Vec<_>>();
        // `[` + items joined by `,` + `]`: 3 items of 4 bytes = 2 + 12 + 2 = 16 bytes.
        let f = Framing::JSON_ARRAY;
        assert_eq!(lens(&split_to_fit(vec![4, 4, 4], |n| *n, f, Some(16))), [3]);
        assert_eq!(
            lens(&split_to_fit(vec![4, 4, 4], |n| *n, f, Some(15))),
            [2, 1]
        );
        assert_eq!(lens(&split_to_fit(vec![4, 4, 4], |n| *n, f, None)), [3]);
        // An item over the limit goes alone; the order is kept.
        let groups = split_to_fit(vec![1, 50, 2, 3], |n| *n, f, Some(10));
        assert_eq!(groups, vec![vec![1], vec![50], vec![2, 3]]);
        assert!(split_to_fit(Vec::<usize>::new(), |n| *n, f, Some(10)).is_empty());
    }
}
