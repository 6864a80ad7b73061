/// Why an ingest listener or source could not be set up (its settings are checked at start
/// and on reload). Every message names the file or config key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A certificate, key or client CA of `api.tls`.
    #[error("{0}")]
    Tls(String),
    /// A Kafka source's consumer settings.
    #[error("{0}")]
    Kafka(String),
}
