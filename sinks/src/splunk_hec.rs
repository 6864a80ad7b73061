//! `splunk_hec`: Splunk HTTP Event Collector (runbooks/splunk.md).
//!
//! `POST {endpoint}/services/collector/event`, `Authorization: Splunk <token>`, a batch of
//! concatenated envelopes `{"time","host","source","sourcetype","index","event","fields"}`.
//! Codes 9 (busy) and 5xx are retried; token errors (1–4, 21, 22) mark the sink failing and keep
//! the events; other data errors dead-letter with the HEC text. With `acknowledgements = true`
//! every request carries a channel and a batch counts only once `/services/collector/ack` says so.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use thoth_config::SplunkHecConfig;
use thoth_event::write_json_string;
use thoth_wal::record::EnrichedRecord;

use crate::destination::{
    body_excerpt, retry_after, BoxFuture, Destination, Embedded, EncodeError, Framing, ItemOutcome,
    Outcome, Reply, RequestBody,
};
use crate::SinkError;

const SOURCE: &str = "thoth-gateway";
const CHANNEL_HEADER: &str = "x-splunk-request-channel";

struct Acks {
    channel: String,
    timeout: Duration,
    poll_interval: Duration,
}

/// The Splunk HEC destination.
pub struct SplunkHec {
    event_url: String,
    ack_url: String,
    authorization: HeaderValue,
    index: Option<String>,
    acks: Option<Acks>,
}

impl SplunkHec {
    pub fn new(config: &SplunkHecConfig) -> Result<SplunkHec, SinkError> {
        let mut authorization = HeaderValue::from_str(&format!("Splunk {}", config.token.expose()))
            .map_err(|_| {
                SinkError::Setting(
                    "the HEC token contains characters not allowed in a header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        let acks = config.acknowledgements.then(|| Acks {
            // One channel per gateway process, as Splunk advises for a client.
            channel: uuid::Uuid::now_v7().to_string(),
            timeout: config.ack_timeout,
            poll_interval: config.ack_poll_interval,
        });
        let ack_url = match &acks {
            Some(a) => format!(
                "{}/services/collector/ack?channel={}",
                config.endpoint, a.channel
            ),
            None => format!("{}/services/collector/ack", config.endpoint),
        };
        Ok(SplunkHec {
            event_url: format!("{}/services/collector/event", config.endpoint),
            ack_url,
            authorization,
            index: config.index.clone(),
            acks,
        })
    }
}

/// A HEC response body.
#[derive(Debug, Default, Deserialize)]
struct HecReply {
    text: Option<String>,
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

/// Token problems: retrying will not help until an operator fixes the token.
const TOKEN_CODES: [i64; 6] = [1, 2, 3, 4, 21, 22];
/// "Server is busy" and "HEC is unhealthy" codes: back off and retry.
const BUSY_CODES: [i64; 4] = [9, 18, 19, 20];

impl SplunkHec {
    /// The HEC envelope of `event` with `json` as its `event` (without it when `None`); returns
    /// where in `out` the JSON is (or goes).
    fn envelope(
        &self,
        event: &EnrichedRecord,
        json: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let view = event.view()?;
        out.extend_from_slice(b"{\"time\":");
        if !view.write_epoch_seconds_ms(out) {
            thoth_event::write_epoch_ms(out, thoth_event::now_unix_ms().into());
        }
        if let Some(host) = view.host() {
            out.extend_from_slice(b",\"host\":");
            write_json_string(out, host);
        }
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(SOURCE.as_bytes());
        out.extend_from_slice(b"\",\"sourcetype\":\"thoth:");
        // The type escaped as a JSON string, without its opening quote: `"thoth:` began it
        // (no `format!` per event).
        let at = out.len();
        write_json_string(out, view.event_type.as_deref().unwrap_or("event"));
        out.remove(at);
        if let Some(index) = &self.index {
            out.extend_from_slice(b",\"index\":");
            write_json_string(out, index);
        }
        out.extend_from_slice(b",\"event\":");
        let json_at = out.len();
        if let Some(json) = json {
            out.extend_from_slice(json);
        }
        out.extend_from_slice(b",\"fields\":{");
        let mut first = true;
        for (key, value) in [
            ("tenant_id", view.tenant_id.as_deref()),
            ("fleet_id", view.fleet_id()),
            ("endpoint_id", view.endpoint()),
            ("risk", view.risk.as_deref()),
            ("decision", view.decision.as_deref()),
        ] {
            // HEC index-time fields are strings; absent ones are left out.
            if let Some(v) = value {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_string(out, key);
                out.push(b':');
                write_json_string(out, v);
            }
        }
        out.extend_from_slice(b"}}");
        Ok(json_at)
    }
}

impl Destination for SplunkHec {
    fn framing(&self) -> Framing {
        // Concatenated JSON objects: no array, no separators.
        Framing::CONCATENATED
    }

    fn encode_event(&self, event: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.envelope(event, Some(&event.json), out).map(|_| ())
    }

    fn encode_envelope(
        &self,
        event: &EnrichedRecord,
        out: &mut Vec<u8>,
    ) -> Option<Result<Embedded, EncodeError>> {
        Some(self.envelope(event, None, out).map(|at| Embedded {
            at,
            json: 0..event.json.len(),
        }))
    }

    fn request(&self, client: &reqwest::Client, body: &RequestBody<'_>) -> reqwest::RequestBuilder {
        let mut req = client
            .post(&self.event_url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(acks) = &self.acks {
            req = req.header(CHANNEL_HEADER, &acks.channel);
        }
        body.attach(req)
    }

    fn classify(&self, reply: &Reply<'_>) -> Outcome {
        let (status, headers, body) = (reply.status, reply.headers, reply.body);
        let events = reply.events;
        let reply: HecReply = serde_json::from_slice(body).unwrap_or_default();
        classify_reply(
            status,
            retry_after(headers),
            &reply,
            body,
            events,
            self.acks.is_some(),
        )
    }

    fn await_ack<'a>(&'a self, client: &'a reqwest::Client, ack_id: u64) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(acks) = &self.acks else {
                return Outcome::Delivered;
            };
            let deadline = tokio::time::Instant::now() + acks.timeout;
            loop {
                tokio::time::sleep(acks.poll_interval).await;
                let reply = client
                    .post(&self.ack_url)
                    .header(AUTHORIZATION, self.authorization.clone())
                    .header(CHANNEL_HEADER, &acks.channel)
                    .header(CONTENT_TYPE, "application/json")
                    .body(format!("{{\"acks\":[{ack_id}]}}"))
                    .send()
                    .await;
                match reply {
                    Ok(mut resp) if resp.status().is_success() => {
                        let body = thoth_http::read_bounded(&mut resp, 64 * 1024).await;
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        if v["acks"][ack_id.to_string()] == true {
                            return Outcome::Delivered;
                        }
                    }
                    Ok(resp) => tracing::warn!(status = %resp.status(), "HEC ack poll refused"),
                    Err(e) => tracing::warn!(error = %e, "HEC ack poll failed"),
                }
                if tokio::time::Instant::now() >= deadline {
                    return Outcome::Retry {
                        after: None,
                        reason: format!(
                            "no indexer acknowledgement for ackId {ack_id} within {:?}; resending",
                            acks.timeout
                        ),
                    };
                }
            }
        })
    }
}

/// HEC's response codes (Splunk's "Troubleshoot HTTP Event Collector" table) as outcomes.
fn classify_reply(
    status: StatusCode,
    after: Option<Duration>,
    reply: &HecReply,
    body: &[u8],
    events: usize,
    acks: bool,
) -> Outcome {
    let code = reply.code;
    let reason = match (&reply.text, code) {
        (Some(text), Some(code)) => format!("HTTP {status}, HEC code {code}: {text}"),
        _ => format!("HTTP {status}: {}", body_excerpt(body)),
    };
    if status.is_success() {
        return match (acks, reply.ack_id) {
            (true, Some(id)) => Outcome::AwaitAck(id),
            _ => Outcome::Delivered,
        };
    }
    if code.is_some_and(|c| BUSY_CODES.contains(&c))
        || status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Outcome::Retry { after, reason };
    }
    if code.is_some_and(|c| TOKEN_CODES.contains(&c))
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        return Outcome::Failing { reason };
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Outcome::TooLarge { reason };
    }
    if matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        // The endpoint is misconfigured: keep the events until it is fixed.
        return Outcome::Failing { reason };
    }
    if let (Some(6), Some(bad)) = (code, reply.invalid_event_number) {
        if bad < events {
            // HEC indexed the events before the invalid one and none after it.
            let results = (0..events)
                .map(|i| match i.cmp(&bad) {
                    std::cmp::Ordering::Less => ItemOutcome::Delivered,
                    std::cmp::Ordering::Equal => ItemOutcome::Reject(reason.clone()),
                    std::cmp::Ordering::Greater => ItemOutcome::Retry(
                        "not indexed: an earlier event of its batch was invalid".into(),
                    ),
                })
                .collect();
            return Outcome::Partial(results);
        }
    }
    Outcome::Reject { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use thoth_config::Secret;

    fn hec(acks: bool) -> SplunkHec {
        SplunkHec::new(&SplunkHecConfig {
            endpoint: "https://splunk:8088".into(),
            token: Secret::new("tok"),
            index: Some("thoth".into()),
            acknowledgements: acks,
            ack_timeout: Duration::from_secs(300),
            ack_poll_interval: Duration::from_secs(10),
        })
        .unwrap()
    }

    fn reply(body: &str) -> HecReply {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn an_event_a_remap_broke_is_refused_with_the_field_to_blame() {
        let mut out = Vec::new();
        let err = hec(false)
            .encode_event(
                &EnrichedRecord::new(
                    "acme",
                    Bytes::copy_from_slice(br#"{"type":"decision","risk":4}"#),
                ),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "field `risk` must be a string");
        let err = hec(false)
            .encode_event(
                &EnrichedRecord::new("acme", Bytes::copy_from_slice(b"[1]")),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "the event is not a JSON object");
    }

    /// The envelope of the event `json`, as written.
    fn envelope(json: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        hec(false)
            .encode_event(
                &EnrichedRecord::new("acme", Bytes::copy_from_slice(json)),
                &mut out,
            )
            .unwrap();
        out
    }

    #[test]
    fn encodes_the_spec_envelope() {
        let json = br#"{"type":"decision","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-1","risk":"high","decision":"block","context":{"fleet":{"id":"eng"},"endpoint":{"hostname":"mbp"}}}"#;
        let out = envelope(json);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": 1795860000.120, "host": "mbp", "source": "thoth-gateway",
                "sourcetype": "thoth:decision", "index": "thoth",
                "event": serde_json::from_slice::<serde_json::Value>(json).unwrap(),
                "fields": {"tenant_id":"acme","fleet_id":"eng","endpoint_id":"ep-1","risk":"high","decision":"block"}
            })
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("{\"time\":1795860000.120,"));
    }

    #[test]
    fn the_envelope_alone_with_the_json_where_it_says_is_the_whole_encoding() {
        let record = |json: &[u8]| EnrichedRecord::new("acme", Bytes::copy_from_slice(json));
        for json in [
            &br#"{"type":"decision","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-1","risk":"high","decision":"block","context":{"fleet":{"id":"eng"},"endpoint":{"hostname":"mbp"}}}"#[..],
            br#"{"time":"1969-12-31T23:59:59.999Z"}"#,
            br#"{"type":"we\"ird","time":"2026-11-28T10:00:00Z","event":"x"}"#,
        ] {
            let whole = envelope(json);
            // Appended after what the buffer already holds, as in a batch.
            let mut out = b"earlier".to_vec();
            let Embedded { at, json: range } = hec(false)
                .encode_envelope(&record(json), &mut out)
                .expect("HEC sends the JSON unchanged")
                .unwrap();
            assert_eq!(range, 0..json.len());
            assert!(out[..at].ends_with(b",\"event\":"));
            let spliced = [&out[7..at], json, &out[at..]].concat();
            assert_eq!(
                String::from_utf8(spliced).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        }
        // Refused the same way, before anything is written.
        let mut out = Vec::new();
        let err = hec(false)
            .encode_envelope(&record(br#"{"risk":4}"#), &mut out)
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "field `risk` must be a string");
        assert!(out.is_empty());
    }

    #[test]
    fn a_time_before_1970_is_negative_seconds() {
        let out = envelope(br#"{"time":"1969-12-31T23:59:59.999Z"}"#);
        assert!(
            out.starts_with(b"{\"time\":-0.001,"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn the_sourcetype_escapes_the_type_and_defaults_to_event() {
        let sourcetype = |json: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(&envelope(json)).unwrap();
            v["sourcetype"].as_str().unwrap().to_string()
        };
        assert_eq!(
            sourcetype(br#"{"type":"we\"ird\\ty\u00e9"}"#),
            "thoth:we\"ird\\ty\u{e9}"
        );
        assert_eq!(sourcetype(br#"{"risk":"low"}"#), "thoth:event");
    }

    #[test]
    fn classifies_hec_codes() {
        let busy = reply(r#"{"text":"Server is busy","code":9}"#);
        let after = Some(Duration::from_secs(3));
        assert!(matches!(
            classify_reply(StatusCode::SERVICE_UNAVAILABLE, after, &busy, b"", 2, false),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let internal = reply(r#"{"text":"Internal server error","code":8}"#);
        assert!(matches!(
            classify_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                &internal,
                b"",
                1,
                false
            ),
            Outcome::Retry { .. }
        ));
        let token = reply(r#"{"text":"Invalid token","code":4}"#);
        assert!(
            matches!(classify_reply(StatusCode::FORBIDDEN, None, &token, b"", 1, false), Outcome::Failing { reason } if reason.contains("code 4: Invalid token"))
        );
        let disabled = reply(r#"{"text":"Token disabled","code":1}"#);
        assert!(matches!(
            classify_reply(StatusCode::FORBIDDEN, None, &disabled, b"", 1, false),
            Outcome::Failing { .. }
        ));
        let index = reply(r#"{"text":"Incorrect index","code":7}"#);
        assert!(
            matches!(classify_reply(StatusCode::BAD_REQUEST, None, &index, b"", 1, false), Outcome::Reject { reason } if reason.contains("Incorrect index"))
        );
        let ok = reply(r#"{"text":"Success","code":0,"ackId":7}"#);
        assert_eq!(
            classify_reply(StatusCode::OK, None, &ok, b"", 1, true),
            Outcome::AwaitAck(7)
        );
        assert_eq!(
            classify_reply(StatusCode::OK, None, &ok, b"", 1, false),
            Outcome::Delivered
        );
    }

    #[test]
    fn invalid_event_number_splits_the_batch() {
        let bad = reply(r#"{"text":"Invalid data format","code":6,"invalid-event-number":1}"#);
        let Outcome::Partial(r) =
            classify_reply(StatusCode::BAD_REQUEST, None, &bad, b"", 3, false)
        else {
            panic!()
        };
        assert_eq!(r[0], ItemOutcome::Delivered);
        assert!(
            matches!(&r[1], ItemOutcome::Reject(reason) if reason.contains("Invalid data format"))
        );
        assert!(matches!(r[2], ItemOutcome::Retry(_)));
    }
}
