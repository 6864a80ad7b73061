//! The delivery of every HTTP sink: encode each event with the sink's [`Destination`] (events
//! it cannot encode are dead-lettered), group them to fit its request limit ([`body`]), and
//! deliver each group through the retry loop, one [`request`] per attempt, with up to
//! `concurrency` batches in flight (fixed, or adaptive).

mod body;
mod request;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use thoth_config::{Compression, Concurrency, HttpSinkConfig};
use thoth_wal::record::EnrichedRecord;
use tokio::sync::watch;

use crate::concurrency::Slots;
use crate::context::SinkContext;
use crate::destination::{BoxFuture, Destination, Embedded, Outcome};
use crate::driver::{Delivery, Event, ProbeResult};
use crate::retry::{deliver_groups, Attempt, Carries};
use crate::SinkError;

/// An HTTP sink's delivery.
pub struct HttpDelivery {
    ctx: Arc<SinkContext>,
    destination: Arc<dyn Destination>,
    client: reqwest::Client,
    gzip: bool,
    slots: Arc<Slots>,
}

/// An event and its encoding for the destination: a slice of the one buffer its batch was
/// encoded into (one allocation per batch, not per event; a part of the batch sent again
/// keeps the whole buffer until it is settled, at most one batch). Where the destination wraps
/// the event's JSON unchanged (`json_at`), the buffer holds only the envelope and the JSON is
/// sent from the record itself: no copy of it while the batch is in flight.
pub(crate) struct Item {
    event: Event,
    encoded: Bytes,
    /// Where in `encoded` the event's JSON goes, and which of its bytes, when it is not in it.
    json_at: Option<Embedded>,
}

impl Item {
    /// What is sent for this item, in order.
    fn parts(&self) -> [&[u8]; 3] {
        match &self.json_at {
            Some(Embedded { at, json }) => [
                &self.encoded[..*at],
                &self.event.sent().json[json.clone()],
                &self.encoded[*at..],
            ],
            None => [&self.encoded[..], &[], &[]],
        }
    }

    /// The bytes sent for this item.
    fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }
}

impl Carries for Item {
    fn event(&self) -> &Event {
        &self.event
    }
    fn event_mut(&mut self) -> &mut Event {
        &mut self.event
    }
}

impl HttpDelivery {
    /// Builds the delivery and its HTTP client (TLS settings are checked here).
    pub fn new(
        ctx: Arc<SinkContext>,
        destination: Arc<dyn Destination>,
        http: &HttpSinkConfig,
    ) -> Result<HttpDelivery, SinkError> {
        let client = thoth_http::build_client(&http.into())?;
        let slots = Arc::new(match http.concurrency {
            Concurrency::Fixed(n) => Slots::new(Some(n as usize), n as usize),
            Concurrency::Adaptive => Slots::new(None, http.max_concurrency as usize),
        });
        Ok(HttpDelivery {
            ctx,
            destination,
            client,
            gzip: http.compression == Compression::Gzip,
            slots,
        })
    }

    async fn deliver_all(&self, events: Vec<Event>, mut stop: watch::Receiver<bool>) -> bool {
        let (items, failed) = encode(&*self.destination, events);
        for (event, reason) in &failed {
            let one = std::iter::once(event);
            if !self.ctx.dead_letter(one, reason, "encode", &mut stop).await {
                return false;
            }
        }
        let groups = body::split_to_fit(
            items,
            Item::len,
            self.destination.framing(),
            self.destination.max_request_bytes(),
        );
        let max_duration = Some(self.ctx.retry.max_duration);
        deliver_groups(&self.ctx, groups, max_duration, self, &mut stop).await
    }

    async fn probe_one(&self, record: EnrichedRecord) -> ProbeResult {
        let started = std::time::Instant::now();
        let done = |ok: bool, status: Option<u16>, error: Option<String>| ProbeResult {
            ok,
            status,
            latency_ms: started.elapsed().as_millis() as u64,
            error,
        };
        let (items, failed) = encode(&*self.destination, vec![Event::new(record, None)]);
        if let Some((_, reason)) = failed.first() {
            return done(false, None, Some(format!("the test event: {reason}")));
        }
        let sent = request::send(self, &items).await;
        match sent.outcome {
            Outcome::Delivered => done(true, sent.status, None),
            other => done(false, sent.status, Some(request::outcome_text(&other))),
        }
    }
}

/// Encodes each event; those the destination cannot encode are returned with the reason.
fn encode(destination: &dyn Destination, events: Vec<Event>) -> (Vec<Item>, Vec<(Event, String)>) {
    // Before the first event is encoded: what an envelope may add to it.
    const FIRST_GUESS: usize = 384;
    let count = events.len();
    let mut json_left: usize = events.iter().map(|e| e.sent().json.len()).sum();
    let mut buf = Vec::new();
    let mut encoded: Vec<(Event, Range<usize>, Option<Embedded>)> = Vec::with_capacity(count);
    let mut failed = Vec::new();
    for (n, event) in events.into_iter().enumerate() {
        let json = event.sent().json.len();
        match (n, encoded.first()) {
            (0, _) => buf.reserve(json + FIRST_GUESS),
            (1, first) => {
                // The first event's envelope, with a margin for longer ids, sizes the buffer
                // for the rest (without their JSON where it is sent from the record): little
                // slack, and rarely a growth that copies the batch.
                let (envelope, with_json) = first.map_or((FIRST_GUESS, true), |(e, range, at)| {
                    let json = if at.is_some() { 0 } else { e.sent().json.len() };
                    (range.len().saturating_sub(json) + 64, at.is_none())
                });
                buf.reserve(if with_json { json_left } else { 0 } + envelope * (count - 1));
            }
            _ => {}
        }
        json_left -= json;
        let start = buf.len();
        let written = match destination.encode_envelope(event.sent(), &mut buf) {
            Some(envelope) => envelope.and_then(|e| embedded_in(event.sent(), start, &buf, e)),
            None => destination
                .encode_event(event.sent(), &mut buf)
                .map(|()| None),
        };
        match written {
            Ok(json_at) => encoded.push((event, start..buf.len(), json_at)),
            Err(e) => {
                buf.truncate(start);
                failed.push((event, format!("cannot encode: {e}")));
            }
        }
    }
    let buf = Bytes::from(buf);
    let items = encoded
        .into_iter()
        .map(|(event, range, json_at)| Item {
            event,
            encoded: buf.slice(range),
            json_at,
        })
        .collect();
    (items, failed)
}

/// An envelope written from `start` in `buf`, with its position made relative to its own
/// bytes; a position or range a destination got wrong is an encoding error, not a panic.
fn embedded_in(
    record: &EnrichedRecord,
    start: usize,
    buf: &[u8],
    e: Embedded,
) -> Result<Option<Embedded>, crate::destination::EncodeError> {
    let fits = (start..=buf.len()).contains(&e.at)
        && e.json.start <= e.json.end
        && e.json.end <= record.json.len();
    if !fits {
        return Err(crate::destination::EncodeError::Invalid(
            "the destination placed the event outside its envelope".into(),
        ));
    }
    Ok(Some(Embedded {
        at: e.at - start,
        json: e.json,
    }))
}

impl Attempt<Item> for HttpDelivery {
    fn send<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { request::send(self, items).await.outcome })
    }
}

impl Delivery for HttpDelivery {
    fn deliver(&self, events: Vec<Event>, stop: watch::Receiver<bool>) -> BoxFuture<'_, bool> {
        Box::pin(self.deliver_all(events, stop))
    }

    fn probe(&self, record: EnrichedRecord) -> BoxFuture<'_, ProbeResult> {
        Box::pin(self.probe_one(record))
    }

    fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::{EncodeError, Framing, Reply, RequestBody};

    /// Writes `<json>|`, or half of it and an error for events holding `bad`. With `envelope`,
    /// writes only the `|` and sends the JSON from the record, placing a JSON that holds
    /// `lost` out of its range.
    struct Halves {
        envelope: bool,
    }

    const HALVES: Halves = Halves { envelope: false };

    impl Destination for Halves {
        fn framing(&self) -> Framing {
            Framing::CONCATENATED
        }
        fn encode_envelope(
            &self,
            e: &EnrichedRecord,
            out: &mut Vec<u8>,
        ) -> Option<Result<Embedded, EncodeError>> {
            if !self.envelope {
                return None;
            }
            if e.json.windows(3).any(|w| w == b"bad") {
                out.push(b'|'); // a failure midway
                return Some(Err(EncodeError::Invalid("bad".into())));
            }
            let at = out.len();
            out.push(b'|');
            let end = e.json.len() + usize::from(e.json.windows(4).any(|w| w == b"lost"));
            Some(Ok(Embedded { at, json: 0..end }))
        }
        fn encode_event(&self, e: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            let json = &e.json[..];
            if json.windows(3).any(|w| w == b"bad") {
                out.extend_from_slice(&json[..json.len() / 2]); // a failure midway
                return Err(EncodeError::Invalid("bad".into()));
            }
            out.extend_from_slice(json);
            out.push(b'|');
            Ok(())
        }
        fn request(
            &self,
            client: &reqwest::Client,
            _: &RequestBody<'_>,
        ) -> reqwest::RequestBuilder {
            client.get("http://127.0.0.1:9")
        }
        fn classify(&self, _: &Reply<'_>) -> Outcome {
            Outcome::Delivered
        }
    }

    #[test]
    fn an_envelope_is_encoded_without_a_copy_of_the_json() {
        let envelope = Halves { envelope: true };
        let events = ["{\"a\":1}", "{\"bad\":2}", "{\"c\":3}", "{\"lost\":4}"].map(event);
        let (items, failed) = encode(&envelope, events.into());
        let sent: Vec<Vec<u8>> = items.iter().map(|i| i.parts().concat()).collect();
        assert_eq!(sent, [&b"{\"a\":1}|"[..], b"{\"c\":3}|"]);
        assert_eq!(items.iter().map(Item::len).collect::<Vec<_>>(), [8, 8]);
        // The buffer holds the envelopes only, back to back; the JSON is the record's.
        let buffer: Vec<&[u8]> = items.iter().map(|i| &i.encoded[..]).collect();
        assert_eq!(buffer, [&b"|"[..], b"|"]);
        assert_eq!(
            items[0].encoded.as_ptr() as usize + 1,
            items[1].encoded.as_ptr() as usize
        );
        assert!(std::ptr::eq(
            items[1].parts()[1].as_ptr(),
            items[1].event.sent().json.as_ptr()
        ));
        let reasons: Vec<&str> = failed.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "cannot encode: bad",
                "cannot encode: the destination placed the event outside its envelope"
            ]
        );
        // The body of a group is what encode_event writes, event after event.
        let body = body::assemble(
            Framing::CONCATENATED,
            items.iter().map(Item::parts),
            false,
            false,
            0,
        );
        assert_eq!(&body.sent[..], b"{\"a\":1}|{\"c\":3}|");
    }

    fn event(json: &str) -> Event {
        Event::new(
            EnrichedRecord::new("acme", bytes::Bytes::copy_from_slice(json.as_bytes())),
            None,
        )
    }

    #[test]
    fn a_batch_is_encoded_into_one_buffer_without_what_failed() {
        let events = ["{\"a\":1}", "{\"bad\":2}", "{\"c\":3}", "{\"bad\":4}"].map(event);
        let (items, failed) = encode(&HALVES, events.into());
        let encoded: Vec<&[u8]> = items.iter().map(|i| &i.encoded[..]).collect();
        assert_eq!(encoded, [&b"{\"a\":1}|"[..], b"{\"c\":3}|"]);
        // Slices of one buffer, back to back: a failure leaves none of its bytes.
        assert_eq!(
            items[0].encoded.as_ptr() as usize + items[0].encoded.len(),
            items[1].encoded.as_ptr() as usize
        );
        let reasons: Vec<(&[u8], &str)> = failed
            .iter()
            .map(|(e, r)| (&e.sent().json[..], r.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (&b"{\"bad\":2}"[..], "cannot encode: bad"),
                (b"{\"bad\":4}", "cannot encode: bad")
            ]
        );
        assert!(encode(&HALVES, Vec::new()).0.is_empty());
    }
}
