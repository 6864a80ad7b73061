/// Why a sink could not be built (its settings are checked before anything runs).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Client(#[from] thoth_http::ClientError),
    /// A destination setting that cannot be used as given (a header value, a URL).
    #[error("{0}")]
    Setting(String),
    #[error("Kafka producer: {0}")]
    Kafka(String),
    #[error("no WAL cursor for sink {0:?}")]
    NoCursor(String),
}
