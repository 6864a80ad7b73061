//! Outbound HTTP, written once for every part of the gateway that calls an API (the HTTP
//! sinks, the MDM sync): the client builder ([`client`]), `Retry-After` ([`retry_after`]),
//! exponential backoff with full jitter ([`backoff`]), a cache of OAuth 2.0
//! client-credentials tokens such as Entra ID's and Jamf's ([`ClientCredentials`]), and the
//! text of a transport error that never shows headers ([`describe_error`]), and bounded reads
//! of response bodies ([`read_bounded`]).

mod backoff;
mod bounded;
mod client;
mod describe;
mod retry_after;
mod token;

pub use backoff::{backoff, Jitter};
pub use bounded::read_bounded;
pub use client::{build_client, ClientError, ClientSettings};
pub use describe::describe_error;
pub use retry_after::retry_after;
pub use token::{ClientCredentials, TokenError};
