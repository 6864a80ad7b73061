//! Loading MDM snapshot files and reloading them when they change. A file that fails to load
//! keeps that provider's previous snapshot; the reason is logged and counted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use thoth_config::{FleetRule, MdmProvider};
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
    pub async fn watch(
        mut self,
        enricher: Arc<Enricher>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if self.refresh() {
                        enricher.swap_index(self.build_index());
                    }
                }
            }
        }
    }
}
