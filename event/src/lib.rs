//! The Thoth event model: the four event types (docs/events.md), their
//! validation, and the JSON forms the gateway reads and writes.
//!
//! An [`Event`] keeps its input's bytes and where each member is in them, so unknown fields are
//! forwarded byte for byte and the enriched form is written without re-serializing what did
//! not change. [`scan`] finds the members of JSON the gateway already holds as valid (the
//! enriched events in the WAL) without parsing it again.

mod decode;
mod depth;
pub mod layout;
mod model;
pub mod scan;
mod signature;
mod timefmt;
mod view;

pub use decode::{decode_batch, BatchError, BodyFormat, IndexedError, Limits, MAX_REPORTED_ERRORS};
pub use depth::{count_events, first_number_out_of_range, max_nesting_depth};
pub use layout::{FieldIndex, Layout};
pub use model::{write_json_string, Event, EventError, EventType, Risk, Verdict};
pub use signature::{
    check_webhook_headers, hub_signature, sign_webhook, verify_webhook, SignedHeaders, VerifyError,
    WebhookSecret,
};
pub use timefmt::{
    format_rfc3339_millis, format_system_time, now_rfc3339, now_unix_ms, parse_rfc3339,
    write_epoch_ms, TimeError,
};
pub use view::{ContextView, EndpointView, EnrichedView, IdName, ViewError};
