use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio::time::Instant;

/// Renew a token this long before it expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A token server's `expires_in` is bounded like every parsed value: a day at most.
const MAX_LIFETIME: Duration = Duration::from_secs(86_400);
/// Assumed when the server does not say (Entra ID and Jamf always do).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The most of a token response read: a token is a few KiB; a server sending more is not
/// read further.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// How much of an error body is quoted.
const MAX_QUOTED: usize = 300;

/// Why no token could be had. The text names the authority, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("cannot reach the {issuer} authority {authority}: {cause}")]
    Unreachable {
        issuer: String,
        authority: String,
        cause: String,
    },
    #[error("{issuer} refused the client credentials (HTTP {status}, {code}): {description}")]
    Refused {
        issuer: String,
        status: u16,
        code: String,
        description: String,
    },
    #[error("unreadable token response from {authority}: {cause}")]
    Unreadable { authority: String, cause: String },
}

struct Token {
    header: HeaderValue,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct Reply {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Refusal {
    error: Option<String>,
    error_description: Option<String>,
}

/// OAuth 2.0 client-credentials tokens (RFC 6749 §4.4) from one token endpoint — Entra ID
/// for Sentinel and Intune, Jamf Pro's API clients — cached until shortly before they expire.
/// Concurrent callers wait for one request; [`invalidate`](Self::invalidate) after a 401.
pub struct ClientCredentials {
    issuer: String,
    authority: String,
    url: String,
    form: Vec<(&'static str, String)>,
    token: Mutex<Option<Token>>,
    fetching: tokio::sync::Mutex<()>,
}

impl ClientCredentials {
    /// Tokens from `url` (of `issuer`, e.g. "Entra ID", at `authority`, both for messages)
    /// for the form `form` (`client_id`, `client_secret`, `scope`…; `grant_type` is added).
    pub fn new(
        issuer: &str,
        authority: &str,
        url: String,
        mut form: Vec<(&'static str, String)>,
    ) -> Self {
        form.insert(0, ("grant_type", "client_credentials".into()));
        ClientCredentials {
            issuer: issuer.to_string(),
            authority: authority.to_string(),
            url,
            form,
            token: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Tokens of an Entra ID app registration (Intune's Graph access, the Sentinel sink).
    pub fn entra(app: &thoth_config::EntraApp) -> Self {
        ClientCredentials::new(
            "Entra ID",
            &app.authority,
            app.token_url(),
            vec![
                ("client_id", app.client_id.clone()),
                ("client_secret", app.client_secret.expose().to_string()),
                ("scope", app.scope.clone()),
            ],
        )
    }

    /// The token endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The form posted to the token endpoint.
    pub fn form(&self) -> &[(&'static str, String)] {
        &self.form
    }

    /// The cached `Authorization` value, when it is still fresh.
    pub fn current(&self) -> Option<HeaderValue> {
        let token = self.token.lock().unwrap();
        token
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.header.clone())
    }

    /// Forgets the cached token (the server refused it).
    pub fn invalidate(&self) {
        *self.token.lock().unwrap() = None;
    }

    /// A fresh `Authorization` value (`Bearer …`, marked sensitive), fetched when the cached
    /// one is missing or due for renewal.
    pub async fn get(&self, client: &reqwest::Client) -> Result<HeaderValue, TokenError> {
        if let Some(header) = self.current() {
            return Ok(header);
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(header) = self.current() {
            return Ok(header); // another caller fetched it meanwhile
        }
        let (header, lifetime) = self.fetch(client).await?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *self.token.lock().unwrap() = Some(Token {
            header: header.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(issuer = %self.issuer, expires_in = lifetime.as_secs(), "token fetched");
        Ok(header)
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<(HeaderValue, Duration), TokenError> {
        let mut resp = client
            .post(&self.url)
            .form(&self.form)
            .send()
            .await
            .map_err(|e| TokenError::Unreachable {
                issuer: self.issuer.clone(),
                authority: self.authority.clone(),
                cause: crate::describe_error(&e),
            })?;
        let status = resp.status();
        let bytes = crate::read_bounded(&mut resp, MAX_TOKEN_RESPONSE).await;
        if !status.is_success() {
            let refusal: Refusal = serde_json::from_slice(&bytes).unwrap_or_default();
            let description = refusal
                .error_description
                .as_deref()
                .map(|d| d.lines().next().unwrap_or(d).to_string())
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED)]);
                    text.trim().to_string()
                });
            return Err(TokenError::Refused {
                issuer: self.issuer.clone(),
                status: status.as_u16(),
                code: refusal.error.unwrap_or_else(|| "no error code".into()),
                description,
            });
        }
        let unreadable = |cause: String| TokenError::Unreadable {
            authority: self.authority.clone(),
            cause,
        };
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        let lifetime = reply
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs)
            .min(MAX_LIFETIME);
        let mut header = HeaderValue::from_str(&format!("Bearer {}", reply.access_token))
            .map_err(|_| unreadable("the token holds characters a header cannot".into()))?;
        header.set_sensitive(true);
        Ok((header, lifetime))
    }
}
