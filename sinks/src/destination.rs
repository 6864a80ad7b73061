//! What a destination module supplies to the delivery engine: how to encode events, how to
//! build the request, and how to read the response. The engine does everything else.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use thoth_event::ViewError;
use thoth_wal::record::EnrichedRecord;

/// The result of one request, as the destination reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every event of the request is delivered.
    Delivered,
    /// A transient failure: send the whole batch again, not before `after` when given.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The destination refuses us (auth, disabled token, retired endpoint): keep the events
    /// queued and retry, mark the sink failing; never dead-letter for this.
    Failing { reason: String },
    /// The destination refuses these events for good: dead-letter the whole batch.
    Reject { reason: String },
    /// Per-event results, in the order of the events sent.
    Partial(Vec<ItemOutcome>),
    /// The request was too large: send the batch again in halves (a single event that is too
    /// large alone is dead-lettered).
    TooLarge { reason: String },
    /// Accepted, pending confirmation (Splunk indexer acknowledgement) under this id.
    AwaitAck(u64),
}

/// The result for one event of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Delivered,
    Retry(String),
    Reject(String),
    /// The sink's settings are wrong for this event (no access to the topic): it waits.
    Failing(String),
}

/// How encoded events are put together into a body.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub prefix: &'static [u8],
    pub separator: &'static [u8],
    pub suffix: &'static [u8],
}

impl Framing {
    /// Events one after the other, nothing around or between them (HEC envelopes, `_bulk`
    /// line pairs, a single webhook body).
    pub const CONCATENATED: Framing = Framing {
        prefix: b"",
        separator: b"",
        suffix: b"",
    };

    /// A JSON array of the events.
    pub const JSON_ARRAY: Framing = Framing {
        prefix: b"[",
        separator: b",",
        suffix: b"]",
    };
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The id a destination that de-duplicates by id (Elasticsearch `_id`, `webhook-id`) gets for
/// an event: unique per tenant *and* event id, so one tenant's id never suppresses another
/// tenant's event; the same on every resend, so a resend is still recognized. 32 lowercase hex
/// digits: the first 128 bits of SHA-256 over the tenant id's length (8 bytes, little
/// endian), the tenant id and the event id. The event's own `event_id` stays in what is sent.
pub fn destination_id(tenant_id: &str, event_id: &str) -> String {
    let mut out = Vec::with_capacity(32);
    write_destination_id(tenant_id, event_id, &mut out);
    String::from_utf8(out).expect("hex digits")
}

/// Appends [`destination_id`] to `out` (no allocation: it runs once per event).
pub fn write_destination_id(tenant_id: &str, event_id: &str, out: &mut Vec<u8>) {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    h.update((tenant_id.len() as u64).to_le_bytes());
    h.update(tenant_id.as_bytes());
    h.update(event_id.as_bytes());
    for b in &h.finalize()[..16] {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

/// Where an envelope ([`Destination::encode_envelope`]) takes the event's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The position in the output, which holds the envelope only.
    pub at: usize,
    /// The bytes of the record's JSON sent there.
    pub json: std::ops::Range<usize>,
}

/// A destination: one small module per SIEM / SOAR / HTTP target.
pub trait Destination: Send + Sync + 'static {
    /// How the encoded events of a batch are framed.
    fn framing(&self) -> Framing;

    /// Appends one enriched event of `tenant_id` (its JSON; `fields`: where its mapped fields
    /// are, when its WAL record says, for
    /// [`EnrichedView::read`](thoth_event::EnrichedView::read)) in the destination's format
    /// to `out`. An error dead-letters that event with the reason.
    fn encode_event(&self, event: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// For a destination that sends the event's JSON unchanged inside an envelope: appends
    /// what `encode_event` would, without the JSON, and says where the JSON goes. The HTTP
    /// driver then sends the record's own bytes there instead of a copy of them. `None` (the
    /// default): `encode_event` is used.
    fn encode_envelope(
        &self,
        _event: &EnrichedRecord,
        _out: &mut Vec<u8>,
    ) -> Option<Result<Embedded, EncodeError>> {
        None
    }

    /// The request for an encoded body (add it with [`RequestBody::attach`]).
    fn request(&self, client: &reqwest::Client, body: &RequestBody<'_>) -> reqwest::RequestBuilder;

    /// Reads the response to a request.
    fn classify(&self, reply: &Reply<'_>) -> Outcome;

    /// Whether `request` reads the uncompressed body (to sign it); otherwise a gzip body is
    /// compressed as it is assembled, without an uncompressed copy.
    fn reads_plain_body(&self) -> bool {
        false
    }

    /// The largest request body (uncompressed, framing included) the destination takes;
    /// batches are split to fit.
    fn max_request_bytes(&self) -> Option<usize> {
        None
    }

    /// Runs before each attempt (e.g. to get or refresh an OAuth token). An `Err` outcome is
    /// taken as the attempt's result without sending anything.
    fn prepare<'a>(&'a self, _client: &'a reqwest::Client) -> BoxFuture<'a, Result<(), Outcome>> {
        Box::pin(async { Ok(()) })
    }

    /// A request to `url` got no response (connection refused, reset, timeout): a destination
    /// with several endpoints may avoid that one for a while.
    fn transport_error(&self, _url: &str) {}

    /// Waits for the confirmation of an [`Outcome::AwaitAck`]; the default has none to wait for.
    fn await_ack<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        _ack_id: u64,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async { Outcome::Delivered })
    }
}

/// The body of one request, as a destination's [`Destination::request`] receives it.
pub struct RequestBody<'a> {
    /// What is sent: the framed events, gzip-compressed when `gzip`.
    pub sent: Bytes,
    pub gzip: bool,
    /// The body before compression, when the destination reads it (to sign it); else empty.
    pub plain: &'a [u8],
    /// Each event's tenant, in order.
    pub tenants: &'a [&'a str],
}

impl RequestBody<'_> {
    /// Adds the body to `req`, with `Content-Encoding: gzip` when it is compressed.
    pub fn attach(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.body(self.sent.clone()); // shares the buffer
        if self.gzip {
            req.header(reqwest::header::CONTENT_ENCODING, "gzip")
        } else {
            req
        }
    }
}

/// A destination's answer to a request, as [`Destination::classify`] reads it.
pub struct Reply<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// At most the first MiB of the response body.
    pub body: &'a [u8],
    /// Events the request carried.
    pub events: usize,
}

/// Why an event could not be encoded for a destination (it is dead-lettered with this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("the event has no {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// The longest `Retry-After` honoured: a destination asking for more (or sending a number
/// that would overflow a deadline) pauses the sink for this long, then is asked again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a destination's `Retry-After` asks for, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    thoth_http::retry_after(headers, MAX_RETRY_AFTER)
}

/// At most this many bytes of a response body are kept in reasons and dead letters.
pub const MAX_REASON_BYTES: usize = 512;

/// A response body as text for a reason, cut to [`MAX_REASON_BYTES`].
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON_BYTES)]);
    let mut s = text.trim().to_string();
    if body.len() > MAX_REASON_BYTES {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(body_excerpt(b" hi \n"), "hi");
        assert_eq!(
            body_excerpt(&[b'a'; 1000]).chars().count(),
            MAX_REASON_BYTES + 1
        );
    }

    #[test]
    fn destination_ids_are_unique_per_tenant_and_stable() {
        let a = destination_id("acme", "e-1");
        assert_eq!(a, destination_id("acme", "e-1"), "the same on every resend");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(
            a,
            destination_id("globex", "e-1"),
            "another tenant, another id"
        );
        // The length prefix: no tenant/event split gives the same input.
        assert_ne!(destination_id("ab", "c"), destination_id("a", "bc"));
        assert_ne!(destination_id("", "x"), destination_id("x", ""));
    }
}
