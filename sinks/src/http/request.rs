//! One request of an HTTP sink, the same for delivery and for `verify`: authenticate
//! (`prepare`), assemble and compress the body, send, read at most [`MAX_RESPONSE_BYTES`] of
//! the answer, classify it, wait for an acknowledgement when the destination gives one — and
//! count it, and tell the concurrency limit how long it took.

use thoth_http::describe_error;
use tokio::time::Instant;

use super::{HttpDelivery, Item};
use crate::concurrency::Answer;
use crate::destination::{ItemOutcome, Outcome, Reply, RequestBody};

/// Largest response body read from a destination; the rest is ignored.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What a request came to.
pub struct Sent {
    pub outcome: Outcome,
    /// The HTTP status, when the destination answered.
    pub status: Option<u16>,
}

/// Sends `items` as one request.
pub async fn send(d: &HttpDelivery, items: &[Item]) -> Sent {
    if let Err(outcome) = d.destination.prepare(&d.client).await {
        return Sent {
            outcome,
            status: None,
        };
    }
    let framing = d.destination.framing();
    let capacity = items.iter().map(|i| i.len() + 1).sum();
    let body = super::body::assemble(
        framing,
        items.iter().map(Item::parts),
        d.gzip,
        d.destination.reads_plain_body(),
        capacity,
    );
    d.ctx.counters.batch_events.observe(items.len() as f64);
    let tenants: Vec<&str> = items
        .iter()
        .map(|i| i.event.sent().tenant_id.as_str())
        .collect();
    let request = d.destination.request(
        &d.client,
        &RequestBody {
            sent: body.sent,
            gzip: d.gzip,
            plain: &body.plain,
            tenants: &tenants,
        },
    );
    // Compressed, the plain body is not needed while the request is in flight.
    drop(body.plain);
    let in_flight = d.slots.in_flight();
    let started = Instant::now();
    let (outcome, status) = match request.send().await {
        Ok(mut resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = thoth_http::read_bounded(&mut resp, MAX_RESPONSE_BYTES).await;
            d.ctx.counters.request(status.as_str());
            let outcome = d.destination.classify(&Reply {
                status,
                headers: &headers,
                body: &body,
                events: items.len(),
            });
            (outcome, Some(status.as_u16()))
        }
        Err(e) => {
            d.ctx.counters.request("error");
            if let Some(url) = e.url() {
                d.destination.transport_error(url.as_str());
            }
            let outcome = Outcome::Retry {
                after: None,
                reason: describe_error(&e),
            };
            (outcome, None)
        }
    };
    let rtt = started.elapsed();
    d.ctx.counters.request_seconds.observe(rtt.as_secs_f64());
    let limit = d.slots.record(rtt, load_answer(&outcome), in_flight);
    d.ctx.counters.concurrency_limit.set(limit as i64);
    let outcome = match outcome {
        Outcome::AwaitAck(id) => d.destination.await_ack(&d.client, id).await,
        other => other,
    };
    Sent { outcome, status }
}

/// What an outcome says about the destination's load, for the adaptive limit.
pub fn load_answer(outcome: &Outcome) -> Answer {
    match outcome {
        // 429, 503, HEC busy, 5xx, timeouts, refused connections.
        Outcome::Retry { .. } => Answer::BackPressure,
        Outcome::Partial(items) if items.iter().any(|i| matches!(i, ItemOutcome::Retry(_))) => {
            Answer::BackPressure
        }
        Outcome::Failing { .. } => Answer::Ignore,
        _ => Answer::Served,
    }
}

/// An outcome as the one line `verify` shows.
pub fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. }
        | Outcome::Failing { reason }
        | Outcome::Reject { reason }
        | Outcome::TooLarge { reason } => reason.clone(),
        Outcome::Partial(items) => format!("{items:?}"),
        Outcome::Delivered => "delivered".into(),
        Outcome::AwaitAck(id) => format!("awaiting acknowledgement {id}"),
    }
}
