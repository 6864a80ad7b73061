//! Bearer tokens. Only SHA-256 digests of tokens are held; a presented token is hashed and
//! looked up, so lookup time says nothing about how close a guess was.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thoth_config::TokenConfig;

use crate::rate::RateLimiter;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// May submit events of any configured tenant and use admin endpoints.
    Admin,
    /// May submit events of this tenant only.
    Tenant(String),
}

/// What a token grants: its scope and, when configured, its rate limit.
#[derive(Debug, Clone)]
pub struct Grant {
    pub scope: Scope,
    pub limit: Option<Arc<RateLimiter>>,
}

/// The name of a credential's rate-limit bucket in the shared state: a prefix of its digest,
/// so the key tells replicas apart nothing about the credential itself.
pub fn bucket_key(kind: &str, digest: &[u8; 32]) -> String {
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

/// The configured tokens.
#[derive(Debug, Default, Clone)]
pub struct TokenTable {
    by_digest: HashMap<[u8; 32], Grant>,
}

impl TokenTable {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let by_digest = tokens
            .iter()
            .map(|t| {
                let scope = match (&t.tenant_id, t.admin) {
                    (_, true) => Scope::Admin,
                    (Some(id), false) => Scope::Tenant(id.clone()),
                    (None, false) => unreachable!("config validation requires tenant_id or admin"),
                };
                let limit = t
                    .max_events_per_second
                    .map(|n| Arc::new(RateLimiter::new(n, bucket_key("token", &t.sha256))));
                (t.sha256, Grant { scope, limit })
            })
            .collect();
        TokenTable { by_digest }
    }

    /// The scope of an `Authorization` header value, if it carries a known bearer token.
    pub fn authorize(&self, header: Option<&[u8]>) -> Result<&Scope, AuthError> {
        self.grant(header).map(|g| &g.scope)
    }

    /// Who a request is: a bearer token decides when one is sent; otherwise a client
    /// certificate mapped in `[[api.tls.clients]]` does.
    pub fn identify(
        &self,
        header: Option<&[u8]>,
        client: Option<&Grant>,
    ) -> Result<Grant, AuthError> {
        match (header, client) {
            (None, Some(grant)) => Ok(grant.clone()),
            (header, _) => self.grant(header).cloned(),
        }
    }

    /// The grant of an `Authorization` header value, if it carries a known bearer token. The
    /// presented token is hashed and its digest looked up: the time taken depends on the
    /// presented token's length only, never on how much of a real token it matches.
    pub fn grant(&self, header: Option<&[u8]>) -> Result<&Grant, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(AuthError::NotBearer)?;
        let digest: [u8; 32] = Sha256::digest(token.trim_ascii()).into();
        self.by_digest.get(&digest).ok_or(AuthError::Unknown)
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    NotBearer,
    Unknown,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => {
                "missing Authorization header; send `Authorization: Bearer <token>`"
            }
            AuthError::NotBearer => "the Authorization header must be `Bearer <token>`",
            AuthError::Unknown => "unknown token",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        let t = |tenant: Option<&str>, admin, tok: &str| TokenConfig {
            tenant_id: tenant.map(Into::into),
            admin,
            sha256: Sha256::digest(tok.as_bytes()).into(),
            max_events_per_second: None,
        };
        TokenTable::new(&[t(Some("acme"), false, "a-tok"), t(None, true, "root")])
    }

    #[test]
    fn bearer_tokens_map_to_scopes() {
        let t = table();
        assert_eq!(
            t.authorize(Some(b"Bearer a-tok")),
            Ok(&Scope::Tenant("acme".into()))
        );
        assert_eq!(t.authorize(Some(b"Bearer root")), Ok(&Scope::Admin));
        assert_eq!(t.authorize(Some(b"Bearer nope")), Err(AuthError::Unknown));
        assert_eq!(t.authorize(Some(b"Basic abc")), Err(AuthError::NotBearer));
        assert_eq!(t.authorize(None), Err(AuthError::Missing));
    }
}

/// Who may submit what: the tokens and the tenants `[[tenants]]` lists. Swapped whole by a
/// config reload (token rotation, a new tenant) while requests keep reading the old one.
#[derive(Debug, Default)]
pub struct Access {
    pub tokens: TokenTable,
    pub tenants: std::collections::HashSet<String>,
}

impl Access {
    pub fn new(config: &thoth_config::Config) -> Access {
        Access {
            tokens: TokenTable::new(&config.api.tokens),
            tenants: config.tenants.iter().map(|t| t.id.clone()).collect(),
        }
    }
}

/// The live [`Access`], shared by ingest, the admin API and Kafka sources.
pub type SharedAccess = std::sync::Arc<arc_swap::ArcSwap<Access>>;
