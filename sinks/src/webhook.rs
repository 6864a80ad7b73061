//! `webhook`: signed HTTP POSTs for SOAR, PAM and any HTTP target (runbooks/soar.md).
//!
//! The body is the event (or `{"events":[...]}` when `batch.max_events > 1`), signed with
//! Standard Webhooks headers: `webhook-id` (`msg_` and an id unique per tenant and event, the
//! same on every retry),
//! `webhook-timestamp` (this attempt) and `webhook-signature` (one `v1,` per secret); plus
//! `X-Hub-Signature-256` when `hub_signature_secret` is set. 2xx is delivered; 410 Gone marks
//! the sink failing (the endpoint is retired); 429 / 5xx are retried with `Retry-After`; a
//! redirect marks it failing; other 4xx dead-letter with the (truncated) response body.

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use thoth_config::WebhookSinkConfig;
use thoth_event::{hub_signature, sign_webhook, EnrichedView};
use thoth_wal::record::EnrichedRecord;

use crate::destination::{
    body_excerpt, destination_id, retry_after, Destination, EncodeError, Framing, Outcome, Reply,
    RequestBody,
};
use crate::SinkError;

/// The webhook destination.
pub struct Webhook {
    url: String,
    config: WebhookSinkConfig,
    headers: Vec<(HeaderName, HeaderValue)>,
    batched: bool,
}

impl Webhook {
    /// `batched`: several events per request (`{"events":[...]}`).
    pub fn new(config: &WebhookSinkConfig, batched: bool) -> Result<Webhook, SinkError> {
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("headers: {k:?} is not a valid header name"))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("headers.{k}: the value is not a valid header value"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()
            .map_err(SinkError::Setting)?;
        Ok(Webhook {
            url: config.url.clone(),
            config: config.clone(),
            headers,
            batched,
        })
    }

    /// The `webhook-id` of a body of events of `tenants`: for one event, `msg_` and its
    /// [`destination_id`] (unique per tenant, the same on every retry); for a batch, or a
    /// remap without an `event_id`, a digest of the tenants and event ids (or of the body).
    fn message_id(&self, raw: &[u8], tenants: &[&str]) -> String {
        if let (false, [tenant]) = (self.batched, tenants) {
            if let Some(id) = EnrichedView::parse(raw).ok().and_then(|v| v.event_id) {
                return format!("msg_{}", destination_id(tenant, &id));
            }
        }
        #[derive(serde::Deserialize)]
        struct Batch<'a> {
            #[serde(borrow)]
            events: Vec<&'a serde_json::value::RawValue>,
        }
        let views = serde_json::from_slice::<Batch>(raw).ok().and_then(|batch| {
            batch
                .events
                .iter()
                .map(|e| EnrichedView::parse(e.get().as_bytes()).ok())
                .collect::<Option<Vec<_>>>()
        });
        let mut h = Sha256::new();
        for tenant in tenants {
            h.update((tenant.len() as u64).to_le_bytes());
            h.update(tenant.as_bytes());
        }
        if let Some(views) = views {
            for e in &views {
                h.update(e.event_id.as_deref().unwrap_or("").as_bytes());
                h.update(b"\n");
            }
        } else {
            h.update(raw);
        }
        format!("msg_{}", &hex_lower(&h.finalize())[..32])
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Destination for Webhook {
    fn framing(&self) -> Framing {
        if self.batched {
            Framing {
                prefix: b"{\"events\":[",
                separator: b",",
                suffix: b"]}",
            }
        } else {
            Framing::CONCATENATED // one event per request
        }
    }

    fn encode_event(&self, event: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // The enriched event goes as it is (a per-sink `remap` will reshape it).
        out.extend_from_slice(&event.json);
        Ok(())
    }

    fn reads_plain_body(&self) -> bool {
        true // the signature covers it
    }

    fn request(&self, client: &reqwest::Client, body: &RequestBody<'_>) -> reqwest::RequestBuilder {
        let (raw, tenants) = (body.plain, body.tenants);
        let id = self.message_id(raw, tenants);
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut req = client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign_webhook(&self.config.secrets, &id, timestamp, raw),
            );
        if let Some(secret) = &self.config.hub_secret {
            req = req.header(
                "x-hub-signature-256",
                hub_signature(secret.expose().as_bytes(), raw),
            );
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        body.attach(req)
    }

    fn classify(&self, reply: &Reply<'_>) -> Outcome {
        let (status, headers, body) = (reply.status, reply.headers, reply.body);
        let reason = format!("HTTP {status}: {}", body_excerpt(body));
        if status.is_success() {
            return Outcome::Delivered;
        }
        if status == StatusCode::GONE {
            return Outcome::Failing {
                reason: format!("{reason} (the receiver retired this endpoint; update `url`)"),
            };
        }
        if status.is_redirection() {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Outcome::Failing {
                reason: format!(
                    "HTTP {status}: redirected to {to}; redirects are not followed, update `url`"
                ),
            };
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Outcome::TooLarge { reason };
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Outcome::Retry {
                after: retry_after(headers),
                reason,
            };
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Outcome::Failing {
                reason: format!("{reason} (the receiver refuses our signature or credentials)"),
            };
        }
        Outcome::Reject { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thoth_event::WebhookSecret;

    fn hook(batched: bool) -> Webhook {
        Webhook::new(
            &WebhookSinkConfig {
                url: "https://soar.example/hooks".into(),
                secrets: vec![
                    WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
                ],
                headers: vec![("X-Tenant".into(), "acme".into())],
                hub_secret: None,
            },
            batched,
        )
        .unwrap()
    }

    #[test]
    fn ids_are_stable_across_retries_and_unique_per_tenant() {
        let one = br#"{"event_id":"e-1","type":"alert"}"#;
        let id = hook(false).message_id(one, &["acme"]);
        assert_eq!(id, format!("msg_{}", destination_id("acme", "e-1")));
        assert_eq!(id, hook(false).message_id(one, &["acme"]));
        assert_ne!(id, hook(false).message_id(one, &["globex"]));
        let batch = br#"{"events":[{"event_id":"a"},{"event_id":"b"}]}"#;
        let id = hook(true).message_id(batch, &["acme", "acme"]);
        assert!(id.starts_with("msg_") && id.len() == 36);
        assert_eq!(id, hook(true).message_id(batch, &["acme", "acme"]));
        assert_ne!(id, hook(true).message_id(batch, &["acme", "globex"]));
        assert_ne!(
            id,
            hook(true).message_id(br#"{"events":[{"event_id":"a"}]}"#, &["acme"])
        );
        // A remap without an event id: the body and the tenant.
        let remapped = br#"{"title":"x"}"#;
        assert_ne!(
            hook(false).message_id(remapped, &["acme"]),
            hook(false).message_id(remapped, &["globex"])
        );
    }

    #[test]
    fn classification() {
        let h = hook(false);
        let none = reqwest::header::HeaderMap::new();
        assert_eq!(
            h.classify(&Reply {
                status: StatusCode::ACCEPTED,
                headers: &none,
                body: b"",
                events: 1
            }),
            Outcome::Delivered
        );
        assert!(matches!(
            h.classify(&Reply {
                status: StatusCode::GONE,
                headers: &none,
                body: b"",
                events: 1
            }),
            Outcome::Failing { .. }
        ));
        assert!(matches!(
            h.classify(&Reply {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: &none,
                body: b"",
                events: 1
            }),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            h.classify(&Reply {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: &none,
                body: b"",
                events: 1
            }),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            h.classify(&Reply {
                status: StatusCode::MOVED_PERMANENTLY,
                headers: &none,
                body: b"",
                events: 1
            }),
            Outcome::Failing { .. }
        ));
        let long = vec![b'x'; 5000];
        match h.classify(&Reply {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            headers: &none,
            body: &long,
            events: 1,
        }) {
            Outcome::Reject { reason } => assert!(reason.len() < 600, "truncated"),
            other => panic!("{other:?}"),
        }
    }
}
