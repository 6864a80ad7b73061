//! `sentinel`: Microsoft Sentinel through the Azure Monitor Logs Ingestion API (SPEC §7,
//! PROTOCOLS.md §2).
//!
//! An Entra ID client-credentials token (cached, refreshed ahead of expiry, refreshed on 401)
//! authorizes `POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`
//! with a JSON array of flat records, each request at most 1 MiB of uncompressed JSON. 204 is
//! delivered; 429 / 503 honour `Retry-After`; 413 splits the batch; 400 dead-letters with the
//! error body; token problems mark the sink failing and keep the events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thoth_config::SentinelConfig;
use thoth_event::{EnrichedView, FieldIndex};

use crate::destination::{body_excerpt, retry_after, BoxFuture, Destination, Framing, Outcome};

/// The Logs Ingestion API takes at most 1 MB per call; like the official client, requests are
/// cut at 1 MiB of uncompressed JSON.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
const API_VERSION: &str = "2023-01-01";
/// Refresh a token this long before it expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Consecutive 401s (each after a token refresh) before the sink counts as failing.
const UNAUTHORIZED_BEFORE_FAILING: u32 = 3;

struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

/// The Sentinel destination.
pub struct Sentinel {
    ingest_url: String,
    token_url: String,
    authority: String,
    form: Vec<(&'static str, String)>,
    token: Mutex<Option<Token>>,
    /// Serializes token requests: concurrent slots wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
    unauthorized: AtomicU32,
}

/// One record of the stream (SPEC §7); the runbook's DCR declares exactly these columns.
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

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

impl Sentinel {
    pub fn new(config: &SentinelConfig) -> Sentinel {
        Sentinel {
            ingest_url: format!(
                "{}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                config.endpoint, config.dcr_immutable_id, config.stream
            ),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                config.authority, config.azure_tenant_id
            ),
            authority: config.authority.clone(),
            form: vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", config.client_id.clone()),
                ("client_secret", config.client_secret.expose().to_string()),
                ("scope", config.scope.clone()),
            ],
            token: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            unauthorized: AtomicU32::new(0),
        }
    }

    fn current_token(&self) -> Option<HeaderValue> {
        let token = self.token.lock().unwrap();
        token
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.header.clone())
    }

    async fn fetch_token(&self, client: &reqwest::Client) -> Result<(), Outcome> {
        let _one_at_a_time = self.fetching.lock().await;
        if self.current_token().is_some() {
            return Ok(()); // another slot fetched it meanwhile
        }
        let resp = client
            .post(&self.token_url)
            .form(&self.form)
            .send()
            .await
            .map_err(|e| Outcome::Failing {
                reason: format!(
                    "cannot reach the Entra ID authority {}: {}",
                    self.authority,
                    crate::engine::describe_error(&e)
                ),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let err: TokenError = serde_json::from_slice(&bytes).unwrap_or_default();
            let description = err
                .error_description
                .as_deref()
                .map(|d| d.lines().next().unwrap_or(d).to_string())
                .unwrap_or_else(|| body_excerpt(&bytes));
            return Err(Outcome::Failing {
                reason: format!(
                    "Entra ID refused the client credentials (HTTP {status}, {}): {description}",
                    err.error.as_deref().unwrap_or("no error code")
                ),
            });
        }
        let reply: TokenReply = serde_json::from_slice(&bytes).map_err(|e| Outcome::Failing {
            reason: format!("unreadable token response from {}: {e}", self.authority),
        })?;
        // A token server's `expires_in` is bounded like every parsed value: a day at most.
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(3600).min(86_400));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        let mut header =
            HeaderValue::from_str(&format!("Bearer {}", reply.access_token)).map_err(|_| {
                Outcome::Failing {
                    reason: "the token response holds an invalid token".into(),
                }
            })?;
        header.set_sensitive(true);
        *self.token.lock().unwrap() = Some(Token {
            header,
            refresh_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(expires_in = lifetime.as_secs(), "Entra ID token fetched");
        Ok(())
    }
}

impl Destination for Sentinel {
    fn framing(&self) -> Framing {
        Framing::JSON_ARRAY
    }

    fn encode_event(
        &self,
        _tenant_id: &str,
        json: &[u8],
        fields: Option<&FieldIndex>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let view = EnrichedView::read(json, fields).map_err(|e| e.to_string())?;
        let event: &RawValue = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let record = Record {
            time_generated: view.time.as_deref().ok_or("the event has no time")?,
            tenant_id: view.tenant_id.as_deref(),
            fleet_id: view.fleet_id(),
            endpoint_id: view.endpoint(),
            hostname: view.host(),
            event_type: view.event_type.as_deref(),
            risk: view.risk.as_deref(),
            decision: view.decision.as_deref(),
            event_id: view.event_id.as_deref(),
            event,
        };
        serde_json::to_writer(&mut *out, &record).map_err(|e| e.to_string())
    }

    fn max_request_bytes(&self) -> Option<usize> {
        Some(MAX_REQUEST_BYTES)
    }

    fn prepare<'a>(&'a self, client: &'a reqwest::Client) -> BoxFuture<'a, Result<(), Outcome>> {
        Box::pin(async move {
            if self.current_token().is_some() {
                return Ok(());
            }
            self.fetch_token(client).await
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        body: Bytes,
        gzip: bool,
        _raw: &[u8],
        _tenants: &[&str],
    ) -> reqwest::RequestBuilder {
        let mut req = client
            .post(&self.ingest_url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-ms-client-request-id", uuid::Uuid::now_v7().to_string())
            .body(body);
        if let Some(token) = self.current_token() {
            req = req.header(AUTHORIZATION, token);
        }
        if gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        req
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        _events: usize,
    ) -> Outcome {
        let reason = format!("HTTP {status}: {}", body_excerpt(body));
        if status.is_success() {
            self.unauthorized.store(0, Ordering::Relaxed);
            return Outcome::Delivered;
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                // The token expired or was revoked: get a new one and try again, a few times.
                *self.token.lock().unwrap() = None;
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
                *self.token.lock().unwrap() = None;
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
    use thoth_config::Secret;

    fn sentinel() -> Sentinel {
        Sentinel::new(&SentinelConfig {
            endpoint: "https://dce.westeurope-1.ingest.monitor.azure.com".into(),
            dcr_immutable_id: "dcr-0123".into(),
            stream: "Custom-ThothEvents_CL".into(),
            azure_tenant_id: "tid".into(),
            client_id: "cid".into(),
            client_secret: Secret::new("s3cr&t=+"),
            authority: "https://login.microsoftonline.com".into(),
            scope: "https://monitor.azure.com//.default".into(),
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
            s.token_url,
            "https://login.microsoftonline.com/tid/oauth2/v2.0/token"
        );
        let form = reqwest::Client::new()
            .post("http://x")
            .form(&s.form)
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
            .encode_event("acme", json, None, &mut out)
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
        let h = HeaderMap::new();
        assert_eq!(
            s.classify(StatusCode::NO_CONTENT, &h, b"", 1),
            Outcome::Delivered
        );
        assert!(
            matches!(s.classify(StatusCode::BAD_REQUEST, &h, b"{\"error\":\"bad column\"}", 1), Outcome::Reject { reason } if reason.contains("bad column"))
        );
        assert!(matches!(
            s.classify(StatusCode::PAYLOAD_TOO_LARGE, &h, b"", 2),
            Outcome::TooLarge { .. }
        ));
        assert!(matches!(
            s.classify(StatusCode::UNAUTHORIZED, &h, b"", 1),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            s.classify(StatusCode::UNAUTHORIZED, &h, b"", 1),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            s.classify(StatusCode::UNAUTHORIZED, &h, b"", 1),
            Outcome::Failing { .. }
        ));
        assert_eq!(
            s.classify(StatusCode::NO_CONTENT, &h, b"", 1),
            Outcome::Delivered
        );
        assert!(matches!(
            s.classify(StatusCode::FORBIDDEN, &h, b"", 1),
            Outcome::Failing { .. }
        ));
    }
}
