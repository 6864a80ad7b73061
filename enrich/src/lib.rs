//! Enrichment: MDM snapshots (Jamf Pro, Intune) normalized into endpoint records, fleet rules,
//! the lock-free endpoint index, and check-in health. See docs/events.md.

mod checkin_outbox;
mod checkins;
mod endpoint_json;
mod endpoint_store;
mod enricher;
mod error;
mod fleet;
mod index;
mod lease;
mod loader;
mod record;
mod snapshot;
mod sync;

pub use checkin_outbox::{unix_ms, CheckinOutbox};
pub use checkins::{status as health_status, CheckinTracker, HealthStatus};
pub use endpoint_json::Members;
pub use enricher::Enricher;
pub use error::MdmError;
pub use fleet::{assign_fleet, glob_match};
pub use index::{EndpointIndex, IndexedEndpoint, MatchedOn, ProviderIndex, ProviderSummary};
pub use lease::with_lease;
pub use loader::{
    file_version, load_provider, LoaderCommand, MdmLoader, MdmStatus, ProviderStatus,
};
pub use record::{EndpointRecord, ProviderSnapshot};
pub use snapshot::{parse_snapshot, read_snapshot};
pub use sync::{
    compare, fetch, remove_stale_staging, staging_path, store_snapshot, store_snapshot_file,
    sync_provider, Progress, SyncCounts,
};
