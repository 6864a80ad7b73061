//! Fast local destinations for benchmarks: a Splunk HEC receiver and an Elasticsearch `_bulk`
//! receiver on one port. They check what a benchmark must not get wrong (the HEC token, gzip
//! that inflates, bodies whose events can be counted) and count events and bytes, but skip
//! what real servers do with the data, so they cost far less than the forwarder under test.
//!
//! * `POST /services/collector/event` (`Authorization: Splunk <token>`) → `{"text":"Success","code":0}`
//! * `POST /_bulk` or `/<index>/_bulk` → `{"took":1,"errors":false,"items":[]}`
//! * `GET /stats` → the counters as JSON; anything else → 404.
//!
//! `knee` models a destination with a best concurrency: up to `best` requests at once are
//! answered after `base`; each request beyond queues and adds another `base` for everyone.
//! `two_sends` makes it a server that writes each response in two sends without
//! `TCP_NODELAY` ([`crate::two_sends`]): the kernel's Nagle and the client's delayed ACK then
//! give round trips of ~1 ms and ~41 ms by turns, however many requests are in flight.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::counting::{count_bulk_documents, count_concatenated_objects};

/// Counters of one receiver.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub hec_requests: AtomicU64,
    pub hec_events: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bulk_events: AtomicU64,
    /// Bytes as they came over the wire (compressed when gzip).
    pub wire_bytes: AtomicU64,
    /// Requests refused (bad token, bad gzip, uncountable body).
    pub refused: AtomicU64,
    /// Requests that arrived, and the sum of the requests in flight at each arrival
    /// (itself included): their ratio is the concurrency the sender used.
    pub arrivals: AtomicU64,
    pub in_flight_at_arrival: AtomicU64,
    inflight: AtomicU64,
}

impl ReceiverStats {
    pub fn to_json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "hec_requests": g(&self.hec_requests),
            "hec_events": g(&self.hec_events),
            "bulk_requests": g(&self.bulk_requests),
            "bulk_events": g(&self.bulk_events),
            "wire_bytes": g(&self.wire_bytes),
            "refused": g(&self.refused),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReceiverOptions {
    /// The HEC token to require; `None` accepts any.
    pub hec_token: Option<String>,
    /// `(best, base)`: see the module documentation; `None` answers at once.
    pub knee: Option<(u64, Duration)>,
    /// Responses in two sends, Nagle on: see the module documentation.
    pub two_sends: bool,
}

/// Binds `addr` and serves until the runtime stops; returns the bound address and counters.
pub async fn start(
    addr: SocketAddr,
    options: ReceiverOptions,
) -> std::io::Result<(SocketAddr, Arc<ReceiverStats>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let stats = Arc::new(ReceiverStats::default());
    let options = Arc::new(options);
    let served = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(!options.two_sends);
            let stream = crate::two_sends::TwoSends::new(stream, options.two_sends);
            let (stats, options) = (served.clone(), options.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (stats, options) = (stats.clone(), options.clone());
                    async move { Ok::<_, Infallible>(handle(req, &stats, &options).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, stats))
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    stats: &ReceiverStats,
    options: &ReceiverOptions,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == hyper::Method::GET && path == "/stats" {
        let mut r = reply(StatusCode::OK, "");
        *r.body_mut() = Full::new(Bytes::from(stats.to_json().to_string()));
        return r;
    }
    let is_hec = path == "/services/collector/event";
    let is_bulk = path == "/_bulk" || path.ends_with("/_bulk");
    if req.method() != hyper::Method::POST || !(is_hec || is_bulk) {
        return reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
    }
    if is_hec {
        if let Some(token) = &options.hec_token {
            let given = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if given != Some(format!("Splunk {token}").as_str()) {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return reply(
                    StatusCode::FORBIDDEN,
                    r#"{"text":"Invalid token","code":4}"#,
                );
            }
        }
    }
    let gzipped = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let in_flight = stats.inflight.fetch_add(1, Ordering::Relaxed) + 1;
    stats.arrivals.fetch_add(1, Ordering::Relaxed);
    stats
        .in_flight_at_arrival
        .fetch_add(in_flight, Ordering::Relaxed);
    let response = async {
        let Ok(wire) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
            return reply(
                StatusCode::BAD_REQUEST,
                r#"{"text":"Body read failed","code":6}"#,
            );
        };
        stats
            .wire_bytes
            .fetch_add(wire.len() as u64, Ordering::Relaxed);
        let body = if gzipped {
            let mut out = Vec::with_capacity(wire.len() * 6);
            if flate2::read::GzDecoder::new(&wire[..])
                .read_to_end(&mut out)
                .is_err()
            {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"text":"Invalid data format","code":6}"#,
                );
            }
            Bytes::from(out)
        } else {
            wire
        };
        if let Some((best, base)) = options.knee {
            tokio::time::sleep(base * (1 + in_flight.saturating_sub(best)) as u32).await;
        }
        if is_hec {
            match count_concatenated_objects(&body) {
                Ok(n) if n > 0 => {
                    stats.hec_requests.fetch_add(1, Ordering::Relaxed);
                    stats.hec_events.fetch_add(n as u64, Ordering::Relaxed);
                    reply(StatusCode::OK, r#"{"text":"Success","code":0}"#)
                }
                _ => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    reply(
                        StatusCode::BAD_REQUEST,
                        r#"{"text":"Invalid data format","code":6}"#,
                    )
                }
            }
        } else {
            match count_bulk_documents(&body) {
                Ok(n) => {
                    stats.bulk_requests.fetch_add(1, Ordering::Relaxed);
                    stats.bulk_events.fetch_add(n as u64, Ordering::Relaxed);
                    reply(StatusCode::OK, r#"{"took":1,"errors":false,"items":[]}"#)
                }
                Err(_) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    reply(
                        StatusCode::BAD_REQUEST,
                        r#"{"error":{"type":"illegal_argument_exception"},"status":400}"#,
                    )
                }
            }
        }
    }
    .await;
    stats.inflight.fetch_sub(1, Ordering::Relaxed);
    response
}
