/// Why an MDM snapshot could not be had: fetched, parsed, read or stored. The text names the
/// provider's URL or file and what went wrong, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// The provider's API answered wrongly, or not at all.
    #[error("{0}")]
    Api(String),
    #[error(transparent)]
    Token(#[from] thoth_http::TokenError),
    #[error(transparent)]
    Client(#[from] thoth_http::ClientError),
    /// Not the provider's snapshot format.
    #[error("{0}")]
    Snapshot(String),
    /// A snapshot file that cannot be read or written.
    #[error("{0}")]
    Storage(String),
}
