//! Loading MDM snapshot files and reloading them when they change. A file that fails to load
//! keeps that provider's previous snapshot; the reason is logged and counted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use thoth_config::{FleetRule, MdmProvider, MdmSource};
use thoth_event::format_rfc3339_millis;

use crate::enricher::Enricher;
use crate::index::EndpointIndex;
use crate::record::ProviderSnapshot;
use crate::snapshot::parse_snapshot;

/// Reads one provider's snapshot file.
pub fn load_provider(p: &MdmProvider) -> Result<ProviderSnapshot, String> {
    let bytes = std::fs::read(&p.file)
        .map_err(|e| format!("cannot read MDM snapshot {}: {e}", p.file.display()))?;
    let records = parse_snapshot(p.kind, &bytes, p.endpoint_id_attribute.as_deref())
        .map_err(|e| format!("{}: {e}", p.file.display()))?;
    let taken_at = std::fs::metadata(&p.file)
        .and_then(|m| m.modified())
        .map(|t| format_rfc3339_millis(t.into()))
        .unwrap_or_default();
    Ok(ProviderSnapshot {
        provider: p.name.clone(),
        tenant_id: p.tenant_id.clone(),
        kind: p.kind,
        taken_at: taken_at.into(),
        records,
    })
}

struct ProviderState {
    config: MdmProvider,
    seen: Option<(SystemTime, u64)>,
    last_good: Option<ProviderSnapshot>,
}

/// All providers' latest good snapshots.
pub struct MdmLoader {
    providers: Vec<ProviderState>,
    rules: Vec<FleetRule>,
    reloads: IntCounterVec,
    endpoints: IntGaugeVec,
}

fn file_version(p: &MdmProvider) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(&p.file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl MdmLoader {
    pub fn new(
        providers: &[MdmProvider],
        rules: &[FleetRule],
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "thoth_mdm_loads_total",
                "MDM snapshot loads, by provider and outcome (ok / error).",
            ),
            &["provider", "outcome"],
        )?;
        let endpoints = IntGaugeVec::new(
            Opts::new(
                "thoth_mdm_endpoints",
                "Endpoint records in the current snapshot.",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(endpoints.clone()))?;
        Ok(MdmLoader {
            providers: providers
                .iter()
                .map(|p| ProviderState {
                    config: p.clone(),
                    seen: None,
                    last_good: None,
                })
                .collect(),
            rules: rules.to_vec(),
            reloads,
            endpoints,
        })
    }

    /// Reloads every provider whose file changed since the last look. True when any snapshot
    /// was replaced.
    pub fn refresh(&mut self) -> bool {
        let mut changed = false;
        for p in &mut self.providers {
            let version = file_version(&p.config);
            if version.is_some() && version == p.seen {
                continue;
            }
            if version.is_none() && p.seen.is_none() && p.last_good.is_some() {
                continue;
            }
            p.seen = version;
            match load_provider(&p.config) {
                Ok(snap) => {
                    tracing::info!(provider = %p.config.name, endpoints = snap.records.len(), "MDM snapshot loaded");
                    self.reloads
                        .with_label_values(&[&p.config.name, "ok"])
                        .inc();
                    self.endpoints
                        .with_label_values(&[&p.config.name])
                        .set(snap.records.len() as i64);
                    p.last_good = Some(snap);
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(provider = %p.config.name, error = %e, "MDM snapshot not loaded; keeping the previous one");
                    self.reloads
                        .with_label_values(&[&p.config.name, "error"])
                        .inc();
                }
            }
        }
        changed
    }

    /// An index of the latest good snapshots.
    pub fn build_index(&self) -> EndpointIndex {
        let snapshots: Vec<ProviderSnapshot> = self
            .providers
            .iter()
            .filter_map(|p| p.last_good.clone())
            .collect();
        EndpointIndex::build(&snapshots, &self.rules)
    }

    /// Loads everything now and installs the index.
    pub fn load_into(&mut self, enricher: &Enricher) {
        self.refresh();
        enricher.swap_index(self.build_index());
    }

    /// Checks the files every `every` and swaps in a new index when one changed, until
    /// `stop` resolves.
    /// Checks the files every `every`, syncs API providers every `refresh_interval` (the first
    /// time at once), reloads on request, and swaps in a new index whenever a snapshot
    /// changed — until `stop` resolves. Runs off the hot path, in its own task.
    pub async fn watch(
        mut self,
        enricher: Arc<Enricher>,
        every: Duration,
        refresh_interval: Duration,
        status: MdmStatus,
        mut reloads: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval(refresh_interval);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
                _ = sync.tick() => self.sync_all(&status).await,
                Some(ack) = reloads.recv() => {
                    if self.refresh() {
                        enricher.swap_index(self.build_index());
                    }
                    let _ = ack.send(());
                    continue;
                }
            }
            if self.refresh() {
                enricher.swap_index(self.build_index());
            }
        }
    }

    /// Syncs every API provider; failures keep the last good snapshot and are recorded.
    async fn sync_all(&mut self, status: &MdmStatus) {
        for p in &self.providers {
            if !matches!(p.config.source, MdmSource::Jamf(_) | MdmSource::Intune(_)) {
                continue;
            }
            let name = p.config.name.clone();
            let progress: crate::sync::Progress = {
                let name = name.clone();
                Arc::new(
                    move |n, total| tracing::debug!(provider = %name, fetched = n, total, "MDM sync"),
                )
            };
            match crate::sync::sync_provider(&p.config, progress).await {
                Ok(counts) => {
                    tracing::info!(provider = %name, ?counts, "MDM sync done");
                    status.success(&name, counts);
                }
                Err(e) => {
                    tracing::error!(provider = %name, error = %e, "MDM sync failed; keeping the last good snapshot");
                    status.failure(&name, e);
                }
            }
        }
    }
}

/// Per-provider sync results, for `/v1/health`.
#[derive(Clone, Default)]
pub struct MdmStatus {
    inner: Arc<std::sync::Mutex<std::collections::BTreeMap<String, ProviderStatus>>>,
}

/// The last sync (or push) of a provider.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProviderStatus {
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_counts: Option<crate::sync::SyncCounts>,
}

impl MdmStatus {
    pub fn success(&self, provider: &str, counts: crate::sync::SyncCounts) {
        let mut m = self.inner.lock().unwrap();
        let s = m.entry(provider.to_string()).or_default();
        s.last_success = Some(thoth_event::now_rfc3339());
        s.last_error = None;
        s.last_counts = Some(counts);
    }

    pub fn failure(&self, provider: &str, error: String) {
        let mut m = self.inner.lock().unwrap();
        m.entry(provider.to_string()).or_default().last_error = Some(error);
    }

    pub fn get(&self, provider: &str) -> ProviderStatus {
        self.inner
            .lock()
            .unwrap()
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }
}
