//! HTTPS for the listener (`[api.tls]`), with optional client certificates that stand for a
//! tenant's token (`[[api.tls.clients]]`, matched by a DNS name the certificate is valid for
//! or by its SHA-256 fingerprint).

use crate::setup_error::SetupError;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use thoth_config::IngestTls;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Grant, Scope};
use crate::rate::RateLimiter;

/// The TLS side of a listener: the acceptor and the client-certificate table.
pub struct TlsSetup {
    pub(crate) acceptor: TlsAcceptor,
    clients: Vec<(Match, Grant)>,
}

enum Match {
    DnsName(ServerName<'static>),
    Fingerprint([u8; 32]),
}

/// The client a connection authenticated as, put in each request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity(pub Option<Grant>);

fn read(path: &std::path::Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|e| SetupError::Tls(format!("cannot read {}: {e}", path.display())))
}

fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::Tls(format!("{}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SetupError::Tls(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsSetup {
    /// Loads the certificate, key and client CA; every problem names its file.
    pub fn new(config: &IngestTls) -> Result<TlsSetup, SetupError> {
        let chain = certificates(&config.cert_file)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&config.key_file)?).map_err(|e| {
            SetupError::Tls(format!(
                "{}: not a PEM private key: {e}",
                config.key_file.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError::Tls(e.to_string()))?;
        let builder = match &config.client_ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| SetupError::Tls(format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if config.client_auth_required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| SetupError::Tls(format!("{}: {e}", ca.display())))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut server = builder.with_single_cert(chain, key).map_err(|e| {
            SetupError::Tls(format!(
                "{} / {}: the key does not fit the certificate or is unsupported: {e}",
                config.cert_file.display(),
                config.key_file.display()
            ))
        })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut clients = Vec::new();
        for c in &config.clients {
            let scope = match (&c.tenant_id, c.admin) {
                (_, true) => Scope::Admin,
                (Some(t), false) => Scope::Tenant(t.clone()),
                (None, false) => unreachable!("config validation requires tenant_id or admin"),
            };
            let grant = Grant {
                scope,
                limit: c
                    .max_events_per_second
                    .map(|n| Arc::new(RateLimiter::new(n, client_bucket_key(c)))),
            };
            let m = match (&c.dns_name, c.sha256) {
                (Some(name), _) => Match::DnsName(
                    ServerName::try_from(name.clone())
                        .map_err(|e| SetupError::Tls(format!("api.tls.clients: {name:?}: {e}")))?,
                ),
                (None, Some(fp)) => Match::Fingerprint(fp),
                (None, None) => unreachable!("config validation requires dns_name or sha256"),
            };
            clients.push((m, grant));
        }
        Ok(TlsSetup {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            clients,
        })
    }

    /// The grant of a verified client certificate, if exactly one entry matches it. A
    /// certificate with a wildcard DNS name is matched by fingerprint only (a wildcard stands
    /// for many clients), and one that matches several entries stands for none of them: one
    /// certificate must never carry two tenants.
    pub fn identify(&self, cert: Option<&CertificateDer<'_>>) -> ClientIdentity {
        let Some(cert) = cert else {
            return ClientIdentity(None);
        };
        let fingerprint: [u8; 32] = Sha256::digest(cert.as_ref()).into();
        let end_entity = webpki::EndEntityCert::try_from(cert)
            .ok()
            .filter(|ee| !ee.valid_dns_names().any(|n| n.contains('*')));
        let mut matches = self.clients.iter().filter(|(m, _)| match m {
            Match::Fingerprint(fp) => *fp == fingerprint,
            Match::DnsName(name) => end_entity
                .as_ref()
                .is_some_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok()),
        });
        let first = matches.next();
        if first.is_some() && matches.next().is_some() {
            tracing::warn!("a client certificate matches several [[api.tls.clients]] entries; it authenticates as none of them");
            return ClientIdentity(None);
        }
        ClientIdentity(first.map(|(_, grant)| grant.clone()))
    }
}

/// The rate-limit bucket of a client certificate mapping: by its DNS name or fingerprint.
fn client_bucket_key(c: &thoth_config::ClientCertConfig) -> String {
    use sha2::{Digest, Sha256};
    let id = match (&c.dns_name, c.sha256) {
        (Some(name), _) => Sha256::digest(name.as_bytes()).into(),
        (None, Some(fp)) => fp,
        (None, None) => [0; 32],
    };
    crate::auth::bucket_key("client", &id)
}
