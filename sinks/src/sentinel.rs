//! `sentinel`: Microsoft Sentinel through the Azure Monitor Logs Ingestion API
//! (runbooks/sentinel.md; Microsoft's "Logs Ingestion API in Azure Monitor").
//!
//! An Entra ID client-credentials token (cached, refreshed ahead of expiry, refreshed on 401)
//! authorizes `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//! with a JSON array of flat records, each request at most 1 MiB of uncompressed JSON. 204 is
//! delivered; 429 / 503 honour `Retry-After`; 413 splits the batch; 400 dead-letters with the
//! error body; token problems mark the sink failing and keep the events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;
use thoth_config::SentinelConfig;
use thoth_http::ClientCredentials;
use thoth_wal::record::EnrichedRecord;

use crate::destination::{
    body_excerpt, retry_after, BoxFuture, Destination, EncodeError, Framing, Outcome, Reply,
    RequestBody,
};

/// The Logs Ingestion API takes at most 1 MB per call; like the official client, requests are
/// cut at 1 MiB of uncompressed JSON.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
const API_VERSION: &str = "2023-01-01";
/// Consecutive 401s (each after a token refresh) before the sink counts as failing.
const UNAUTHORIZED_BEFORE_FAILING: u32 = 3;

/// The Sentinel destination.
pub struct Sentinel {
    ingest_url: String,
    credentials: ClientCredentials,
    unauthorized: AtomicU32,
}

/// One record of the stream (docs/configuration.md, `type = "sentinel"`); the runbook's DCR declares exactly these columns.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Record<'a> {
    time_generated: &'a str,
    tenant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(rename = "Type")]
    event_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a str>,
    event_id: Option<&'a str>,
    event: &'a RawValue,
}

impl Sentinel {
    pub fn new(config: &SentinelConfig) -> Sentinel {
        Sentinel {
            ingest_url: format!(
                "{}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                config.endpoint, config.dcr_immutable_id, config.stream
            ),
            credentials: ClientCredentials::entra(&config.entra),
            unauthorized: AtomicU32::new(0),
        }
    }
}

impl Destination for Sentinel {
    fn framing(&self) -> Framing {
        Framing::JSON_ARRAY
    }

    fn encode_event(&self, event: &EnrichedRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let view = event.view()?;
        let invalid = |e: serde_json::Error| EncodeError::Invalid(e.to_string());
        let json: &RawValue = serde_json::from_slice(&event.json).map_err(invalid)?;
        let record = Record {
            time_generated: view.time.as_deref().ok_or(EncodeError::Missing("time"))?,
            tenant_id: view.tenant_id.as_deref(),
            fleet_id: view.fleet_id(),
            endpoint_id: view.endpoint(),
            hostname: view.host(),
            event_type: view.event_type.as_deref(),
            risk: view.risk.as_deref(),
            decision: view.decision.as_deref(),
            event_id: view.event_id.as_deref(),
            event: json,
        };
        serde_json::to_writer(&mut *out, &record).map_err(invalid)
    }

    fn max_request_bytes(&self) -> Option<usize> {
        Some(MAX_REQUEST_BYTES)
    }

    fn prepare<'a>(&'a self, client: &'a reqwest::Client) -> BoxFuture<'a, Result<(), Outcome>> {
        Box::pin(async move {
            match self.credentials.get(client).await {
                Ok(_) => Ok(()),
                Err(e) => Err(Outcome::Failing {
                    reason: e.to_string(),
                }),
            }
        })
    }

    fn request(&self, client: &reqwest::Client, body: &RequestBody<'_>) -> reqwest::RequestBuilder {
        let mut req = client
            .post(&self.ingest_url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-ms-client-request-id", uuid::Uuid::now_v7().to_string());
        if let Some(token) = self.credentials.current() {
            req = req.header(AUTHORIZATION, token);
        }
        body.attach(req)
    }

    fn classify(&self, reply: &Reply<'_>) -> Outcome {
        let (status, headers, body) = (reply.status, reply.headers, reply.body);
        let reason = format!("HTTP {status}: {}", body_excerpt(body));
        if status.is_success() {
            self.unauthorized.store(0, Ordering::Relaxed);
            return Outcome::Delivered;
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                // The token expired or was revoked: get a new one and try again, a few times.
                self.credentials.invalidate();
                let n = self.unauthorized.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= UNAUTHORIZED_BEFORE_FAILING {
                    Outcome::Failing {
                        reason: format!("{reason} (still unauthorized after {n} fresh tokens)"),
                    }
                } else {
                    Outcome::Retry {
                        after: Some(Duration::ZERO),
                        reason,
                    }
                }
            }
            StatusCode::FORBIDDEN => {
                self.credentials.invalidate();
                Outcome::Failing {
                    reason: format!(
                        "{reason} (grant the app the Monitoring Metrics Publisher role on the DCR; it can take 30 minutes)"
                    ),
                }
            }
            StatusCode::NOT_FOUND => Outcome::Failing {
                reason: format!("{reason} (check endpoint, dcr_immutable_id and stream)"),
            },
            StatusCode::PAYLOAD_TOO_LARGE => Outcome::TooLarge { reason },
            StatusCode::TOO_MANY_REQUESTS => Outcome::Retry {
                after: retry_after(headers),
                reason,
            },
            s if s.is_server_error() => Outcome::Retry {
                after: retry_after(headers),
                reason,
            },
            _ => Outcome::Reject { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use thoth_config::Secret;

    fn sentinel() -> Sentinel {
        Sentinel::new(&SentinelConfig {
            endpoint: "https://dce.westeurope-1.ingest.monitor.azure.com".into(),
            dcr_immutable_id: "dcr-0123".into(),
            stream: "Custom-ThothEvents_CL".into(),
            entra: thoth_config::EntraApp {
                azure_tenant_id: "tid".into(),
                client_id: "cid".into(),
                client_secret: Secret::new("s3cr&t=+"),
                authority: "https://login.microsoftonline.com".into(),
                scope: "https://monitor.azure.com//.default".into(),
            },
        })
    }

    #[test]
    fn urls_and_token_form() {
        let s = sentinel();
        assert_eq!(
            s.ingest_url,
            "https://dce.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/dcr-0123/streams/Custom-ThothEvents_CL?api-version=2023-01-01"
        );
        assert_eq!(
            s.credentials.url(),
            "https://login.microsoftonline.com/tid/oauth2/v2.0/token"
        );
        let form = reqwest::Client::new()
            .post("http://x")
            .form(s.credentials.form())
            .build()
            .unwrap();
        assert_eq!(
            form.body().and_then(|b| b.as_bytes()).unwrap(),
            b"grant_type=client_credentials&client_id=cid&client_secret=s3cr%26t%3D%2B&scope=https%3A%2F%2Fmonitor.azure.com%2F%2F.default"
        );
    }

    #[test]
    fn records_have_the_spec_columns() {
        let json = br#"{"type":"decision","event_id":"e1","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-1","risk":"high","decision":"block","context":{"fleet":{"id":"eng"},"endpoint":{"hostname":"mbp"}}}"#;
        let mut out = Vec::new();
        sentinel()
            .encode_event(
                &EnrichedRecord::new("acme", Bytes::copy_from_slice(json)),
                &mut out,
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"TimeGenerated":"2026-11-28T10:00:00.120Z","TenantId":"acme","FleetId":"eng",
                "EndpointId":"ep-1","Hostname":"mbp","Type":"decision","Risk":"high","Decision":"block",
                "EventId":"e1","Event":serde_json::from_slice::<serde_json::Value>(json).unwrap()})
        );
    }

    #[test]
    fn classification() {
        let s = sentinel();
        let h = reqwest::header::HeaderMap::new();
        assert_eq!(
            s.classify(&Reply {
                status: StatusCode::NO_CONTENT,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Delivered
        );
        assert!(
            matches!(s.classify(&Reply { status: StatusCode::BAD_REQUEST, headers: &h, body: b"{\"error\":\"bad column\"}", events: 1 }), Outcome::Reject { reason } if reason.contains("bad column"))
        );
        assert!(matches!(
            s.classify(&Reply {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                headers: &h,
                body: b"",
                events: 2
            }),
            Outcome::TooLarge { .. }
        ));
        assert!(matches!(
            s.classify(&Reply {
                status: StatusCode::UNAUTHORIZED,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            s.classify(&Reply {
                status: StatusCode::UNAUTHORIZED,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            s.classify(&Reply {
                status: StatusCode::UNAUTHORIZED,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Failing { .. }
        ));
        assert_eq!(
            s.classify(&Reply {
                status: StatusCode::NO_CONTENT,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Delivered
        );
        assert!(matches!(
            s.classify(&Reply {
                status: StatusCode::FORBIDDEN,
                headers: &h,
                body: b"",
                events: 1
            }),
            Outcome::Failing { .. }
        ));
    }
}
