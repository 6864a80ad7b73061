//! MDM snapshots shared between replicas (`[state] backend = "redis"`): a snapshot that
//! changes here — a sync (by the replica holding the provider's lease) or a
//! `PUT /v1/mdm/{provider}` — is stored in the shared state under a new version, and every
//! replica installs a newer version within [`SHARE_EVERY`] (then its loader swaps the index
//! in at once). File providers are not shared: each replica reads its own file.

use std::time::{Duration, SystemTime};

use thoth_config::{MdmProvider, MdmSource};
use thoth_enrich::{file_version, LoaderCommand};
use thoth_state::SharedState;
use tokio::sync::{mpsc, watch};

/// How often the shared versions are compared with this replica's.
pub const SHARE_EVERY: Duration = Duration::from_secs(2);

/// What this replica has of one provider's snapshot.
struct Held {
    provider: MdmProvider,
    /// The shared version installed or published here (0: none).
    version: u64,
    /// The file as it was when last published or installed: a different one changed here.
    file: Option<(SystemTime, u64)>,
}

/// Whether a provider's snapshot is shared: the ones the gateway writes itself.
pub fn shared_source(p: &MdmProvider) -> bool {
    matches!(
        p.source,
        MdmSource::Jamf(_) | MdmSource::Intune(_) | MdmSource::Push
    )
}

/// Runs until `stop`.
pub async fn share(
    providers: Vec<MdmProvider>,
    shared: SharedState,
    loader: mpsc::Sender<LoaderCommand>,
    mut stop: watch::Receiver<bool>,
) {
    let mut held: Vec<Held> = providers
        .into_iter()
        .filter(shared_source)
        .map(|provider| Held {
            file: file_version(&provider),
            provider,
            version: 0,
        })
        .collect();
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let mut installed = false;
        for h in &mut held {
            installed |= share_one(h, &shared).await;
        }
        if installed {
            let (ack, done) = tokio::sync::oneshot::channel();
            if loader.send(LoaderCommand::Refresh(ack)).await.is_ok() {
                let _ = done.await;
            }
        }
    }
}

/// Publishes a snapshot that changed here, or installs a newer shared one: whether one was
/// installed.
async fn share_one(h: &mut Held, shared: &SharedState) -> bool {
    let name = h.provider.name.clone();
    let now = file_version(&h.provider);
    if now.is_some() && now != h.file {
        let Ok(bytes) = tokio::fs::read(&h.provider.file).await else {
            return false;
        };
        if let Some(v) = shared.publish_snapshot(&name, bytes).await {
            tracing::info!(provider = %name, version = v, "MDM snapshot shared with the other replicas");
            h.version = v;
            h.file = now;
        }
        return false;
    }
    match shared.snapshot_version(&name).await {
        Some(v) if v > h.version => {}
        _ => return false,
    }
    let Some((version, data)) = shared.fetch_snapshot(&name).await else {
        return false;
    };
    if data.is_empty() {
        return false;
    }
    let provider = h.provider.clone();
    let stored =
        tokio::task::spawn_blocking(move || thoth_enrich::store_snapshot(&provider, &data)).await;
    // A version that does not install here is not tried again; the next one is.
    h.version = version;
    match stored {
        Ok(Ok(counts)) => {
            h.file = file_version(&h.provider);
            tracing::info!(provider = %name, version, ?counts, "MDM snapshot of another replica installed");
            true
        }
        Ok(Err(e)) => {
            tracing::error!(provider = %name, version, error = %e, "cannot install the shared MDM snapshot; keeping this replica's");
            false
        }
        Err(e) => {
            tracing::error!(provider = %name, error = %e, "installing the shared MDM snapshot panicked");
            false
        }
    }
}
