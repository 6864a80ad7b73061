//! Loading MDM snapshot files and reloading them when they change. A file that fails to load
//! keeps that provider's previous snapshot; the reason is logged and counted.

use crate::error::MdmError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use thoth_config::{FleetRule, MdmProvider, MdmSource};
use thoth_event::format_system_time;

use crate::enricher::Enricher;
use crate::index::{EndpointIndex, ProviderIndex};
use crate::record::ProviderSnapshot;
use crate::snapshot::read_snapshot;

/// Reads one provider's snapshot file.
pub fn load_provider(p: &MdmProvider) -> Result<ProviderSnapshot, MdmError> {
    let file = std::fs::File::open(&p.file).map_err(|e| {
        MdmError::Storage(format!(
            "cannot read MDM snapshot {}: {e}",
            p.file.display()
        ))
    })?;
    let records = read_snapshot(p.kind, file, p.endpoint_id_attribute.as_deref())
        .map_err(|e| MdmError::Storage(format!("{}: {e}", p.file.display())))?;
    let taken_at = std::fs::metadata(&p.file)
        .and_then(|m| m.modified())
        .map(format_system_time)
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
    /// The last good snapshot, indexed (its records are not kept: they were most of the
    /// gateway's memory).
    last_good: Option<Arc<ProviderIndex>>,
}

/// All providers' latest good snapshots.
pub struct MdmLoader {
    providers: Vec<ProviderState>,
    rules: Vec<FleetRule>,
    reloads: IntCounterVec,
    endpoints: IntGaugeVec,
    after_install: Option<fn()>,
    /// With shared state, one replica at a time syncs each API provider (a lease).
    shared: thoth_state::SharedState,
}

/// The (modification time, length) of a provider's snapshot file: how a change is noticed.
pub fn file_version(p: &MdmProvider) -> Option<(SystemTime, u64)> {
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
            after_install: None,
            shared: thoth_state::SharedState::local(),
        })
    }

    /// A function run on the loading thread after each new index is installed. The binary
    /// uses it to hand the parse's freed memory back to the system at once: its allocator
    /// would otherwise keep it until that thread allocates again (measured in BENCHMARKS.md).
    /// Syncs API providers only while holding their lease in `shared` (when it answers).
    pub fn share(mut self, shared: thoth_state::SharedState) -> Self {
        self.shared = shared;
        self
    }

    pub fn after_install(mut self, hook: fn()) -> Self {
        self.after_install = Some(hook);
        self
    }

    fn install(&self, enricher: &Enricher) {
        enricher.swap_index(self.build_index());
        if let Some(hook) = self.after_install {
            hook();
        }
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
                    p.last_good = Some(Arc::new(ProviderIndex::build(&snap, &self.rules)));
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

    /// Takes a reloaded config's providers and fleet rules. A provider that kept its name and
    /// settings keeps its last good snapshot; others are loaded from their files afresh.
    pub fn reconfigure(&mut self, providers: &[MdmProvider], rules: &[FleetRule]) {
        let mut old = std::mem::take(&mut self.providers);
        self.providers = providers
            .iter()
            .map(|p| match old.iter().position(|o| o.config == *p) {
                Some(i) => old.swap_remove(i),
                None => ProviderState {
                    config: p.clone(),
                    seen: None,
                    last_good: None,
                },
            })
            .collect();
        for gone in old {
            let _ = self.endpoints.remove_label_values(&[&gone.config.name]);
        }
        if self.rules != rules {
            // Fleets are assigned at indexing: read every snapshot again. One that no longer
            // loads keeps its part with the fleets of the old rules (the error is logged).
            for p in &mut self.providers {
                p.seen = None;
            }
        }
        self.rules = rules.to_vec();
    }

    /// An index of the latest good snapshots.
    pub fn build_index(&self) -> EndpointIndex {
        EndpointIndex::from_parts(
            self.providers
                .iter()
                .filter_map(|p| p.last_good.clone())
                .collect(),
        )
    }

    /// Loads everything now and installs the index.
    pub fn load_into(&mut self, enricher: &Enricher) {
        self.refresh();
        self.install(enricher);
    }

    /// Checks the files every `every` and swaps in a new index when one changed, until
    /// `stop` resolves.
    /// Checks the files every `every`, syncs API providers every `refresh_interval` (the first
    /// time at once), reloads on request, and swaps in a new index whenever a snapshot
    /// changed — until `stop` resolves. Runs off the hot path, in its own task.
    pub async fn watch(
        &mut self,
        enricher: Arc<Enricher>,
        every: Duration,
        refresh_interval: Duration,
        status: MdmStatus,
        commands: &mut tokio::sync::mpsc::Receiver<LoaderCommand>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = sync_interval(refresh_interval);
        let mut refresh_interval = refresh_interval;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
                _ = sync.tick() => self.sync_all(&status, refresh_interval).await,
                Some(command) = commands.recv() => {
                    let (ack, reconfigured) = match command {
                        LoaderCommand::Refresh(ack) => (ack, false),
                        LoaderCommand::Reconfigure { providers, rules, refresh_interval: every, ack } => {
                            self.reconfigure(&providers, &rules);
                            // The first sync of the new providers happens at once.
                            sync = sync_interval(every);
                            refresh_interval = every;
                            (ack, true)
                        }
                    };
                    if self.refresh() || reconfigured {
                        self.install(&enricher);
                    }
                    let _ = ack.send(());
                    continue;
                }
            }
            if self.refresh() {
                self.install(&enricher);
            }
        }
    }

    /// Syncs every API provider; failures keep the last good snapshot and are recorded. With
    /// shared state, a provider whose lease another replica holds is skipped: that replica
    /// syncs it and its snapshot reaches this one through the shared state.
    async fn sync_all(&mut self, status: &MdmStatus, refresh_interval: Duration) {
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
            let synced = crate::lease::with_lease(
                &self.shared,
                &name,
                refresh_interval,
                crate::sync::sync_provider(&p.config, progress),
            )
            .await;
            let Some(synced) = synced else {
                tracing::debug!(provider = %name, "MDM sync: another replica holds the lease");
                continue;
            };
            match synced {
                Ok(counts) => {
                    tracing::info!(provider = %name, ?counts, "MDM sync done");
                    status.success(&name, counts);
                }
                Err(e) => {
                    tracing::error!(provider = %name, error = %e, "MDM sync failed; keeping the last good snapshot");
                    status.failure(&name, e.to_string());
                }
            }
        }
    }
}

/// What the MDM task is asked to do besides its own schedule.
pub enum LoaderCommand {
    /// Reload changed snapshot files now; answered once the new index is in place.
    Refresh(tokio::sync::oneshot::Sender<()>),
    /// Take a reloaded config's providers and rules; answered once the new index is in place.
    Reconfigure {
        providers: Vec<MdmProvider>,
        rules: Vec<FleetRule>,
        refresh_interval: Duration,
        ack: tokio::sync::oneshot::Sender<()>,
    },
}

fn sync_interval(every: Duration) -> tokio::time::Interval {
    let mut sync = tokio::time::interval(every);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sync
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
