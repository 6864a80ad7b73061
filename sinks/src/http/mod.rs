//! The delivery of every HTTP sink: encode each event with the sink's [`Destination`] (events
//! it cannot encode are dead-lettered), group them to fit its request limit ([`body`]), and
//! deliver each group through the retry loop, one [`request`] per attempt, with up to
//! `concurrency` batches in flight (fixed, or adaptive).

mod body;
mod request;

use std::sync::Arc;

use thoth_config::{Compression, Concurrency, HttpSinkConfig};
use thoth_wal::record::EnrichedRecord;
use tokio::sync::watch;

use crate::concurrency::Slots;
use crate::context::SinkContext;
use crate::destination::{BoxFuture, Destination, Outcome};
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

/// An event and its encoding for the destination.
pub(crate) struct Item {
    event: Event,
    encoded: Vec<u8>,
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

    /// Encodes each event; those the destination cannot encode are returned with the reason.
    fn encode(&self, events: Vec<Event>) -> (Vec<Item>, Vec<(Event, String)>) {
        let mut items = Vec::with_capacity(events.len());
        let mut failed = Vec::new();
        for event in events {
            let mut encoded = Vec::with_capacity(event.sent().json.len() + 256);
            match self.destination.encode_event(event.sent(), &mut encoded) {
                Ok(()) => items.push(Item { event, encoded }),
                Err(e) => failed.push((event, format!("cannot encode: {e}"))),
            }
        }
        (items, failed)
    }

    async fn deliver_all(&self, events: Vec<Event>, mut stop: watch::Receiver<bool>) -> bool {
        let (items, failed) = self.encode(events);
        for (event, reason) in &failed {
            let one = std::iter::once(event);
            if !self.ctx.dead_letter(one, reason, "encode", &mut stop).await {
                return false;
            }
        }
        let groups = body::split_to_fit(
            items,
            |i| i.encoded.len(),
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
        let (items, failed) = self.encode(vec![Event::new(record, None)]);
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
