//! The MDM sync lease: with shared state, one replica at a time syncs each API provider. The
//! lease lasts one refresh interval from its claim (so the fleet syncs a provider about once
//! per interval, and a dead leader is replaced within one), and is renewed while a sync runs
//! longer than that.

use std::future::Future;
use std::time::Duration;

use thoth_state::SharedState;

/// Runs `sync` when this replica holds (or takes) the lease of `provider`, or when there is
/// no shared state or it does not answer (each replica then syncs for itself); `None` when
/// another replica holds it.
pub async fn with_lease<T>(
    shared: &SharedState,
    provider: &str,
    interval: Duration,
    sync: impl Future<Output = T>,
) -> Option<T> {
    if shared.backend() == "local" {
        return Some(sync.await);
    }
    match shared.claim("mdm_lease", provider, interval).await {
        Some(false) => return None,
        Some(true) => {}
        None => tracing::warn!(
            provider,
            "MDM sync without the lease: the shared state does not answer"
        ),
    }
    tokio::pin!(sync);
    let mut renew = tokio::time::interval(renew_every(interval));
    renew.tick().await; // the first tick is now
    loop {
        tokio::select! {
            done = &mut sync => return Some(done),
            _ = renew.tick() => {
                if shared.renew("mdm_lease", provider, interval).await == Some(false) {
                    tracing::warn!(provider, "MDM sync lease taken by another replica while syncing");
                }
            }
        }
    }
}

/// A third of the lease, at least a second.
pub fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_shared_state_every_replica_syncs() {
        let r = with_lease(&SharedState::local(), "p", Duration::from_secs(60), async {
            7
        })
        .await;
        assert_eq!(r, Some(7));
    }

    #[test]
    fn the_lease_is_renewed_three_times_per_period() {
        assert_eq!(
            renew_every(Duration::from_secs(900)),
            Duration::from_secs(300)
        );
        assert_eq!(renew_every(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
