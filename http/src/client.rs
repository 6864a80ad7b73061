use std::path::PathBuf;
use std::time::Duration;

/// How an outbound client is built: timeouts, pooling and the server certificates trusted.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The whole request, connection to last byte of the response.
    pub timeout: Duration,
    /// Idle connections kept per host (about the requests in flight at once).
    pub max_idle_per_host: usize,
    /// PEM certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any server certificate (logged as a warning).
    pub verify: bool,
}

impl ClientSettings {
    /// A verifying client with `timeout` and reqwest's default pool.
    pub fn new(timeout: Duration) -> Self {
        ClientSettings {
            timeout,
            max_idle_per_host: usize::MAX,
            ca_file: None,
            verify: true,
        }
    }
}

impl From<&thoth_config::HttpSinkConfig> for ClientSettings {
    /// An HTTP sink's client: its timeout and TLS settings, one idle connection per request
    /// it may have in flight.
    fn from(http: &thoth_config::HttpSinkConfig) -> Self {
        ClientSettings {
            timeout: http.timeout,
            max_idle_per_host: http.most_in_flight() as usize,
            ca_file: http.tls.ca_file.clone(),
            verify: http.tls.verify,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read tls.ca_file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.ca_file {path} is not PEM certificates: {message}")]
    BadCa { path: PathBuf, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The one HTTP client builder: rustls, the gateway's user agent, no redirects (a request
/// carrying a token goes where it was configured to, nowhere else), connect timeout at most
/// 10 s.
pub fn build_client(settings: &ClientSettings) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(settings.max_idle_per_host)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("thoth-gateway/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::BadCa {
                path: path.clone(),
                message: e.to_string(),
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !settings.verify {
        tracing::warn!("tls.verify = false: this client accepts any server certificate");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| ClientError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("thoth-http-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = ClientSettings::new(Duration::from_secs(1));
        s.ca_file = Some(dir.join("missing.pem"));
        let e = build_client(&s).unwrap_err().to_string();
        assert!(e.starts_with("cannot read tls.ca_file"), "{e}");
        std::fs::write(
            dir.join("bad.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        s.ca_file = Some(dir.join("bad.pem"));
        let e = build_client(&s).unwrap_err().to_string();
        assert!(e.contains("is not PEM certificates"), "{e}");
        s.ca_file = None;
        build_client(&s).unwrap();
        std::fs::remove_dir_all(dir).ok();
    }
}
