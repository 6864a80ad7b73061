//! The HTTP client of a sink: one connection pool per sink, keep-alive, rustls.

use thoth_config::HttpSinkConfig;

/// Builds a sink's client from its `timeout`, `concurrency` and `tls` settings.
pub fn build(http: &HttpSinkConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(http.timeout)
        .connect_timeout(http.timeout.min(std::time::Duration::from_secs(10)))
        .pool_max_idle_per_host(http.most_in_flight() as usize)
        // A redirect is an answer to report, not to follow (Standard Webhooks: 3xx is a failure).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("thoth-gateway/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &http.tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read tls.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "tls.ca_file {} is not PEM certificates: {e}",
                path.display()
            )
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !http.tls.verify {
        tracing::warn!("tls.verify = false: this sink accepts any server certificate");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}
