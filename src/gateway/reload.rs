//! Config reload (SIGHUP and `POST /v1/reload`): the config file is checked exactly as
//! `validate` checks it, and only when it passes are tokens, tenants, the global transform,
//! MDM providers and sinks swapped. A refused reload changes nothing.
//!
//! What the process binds or opens at start (listener, data dir, WAL, sources, limits) only
//! changes at restart; a reload that changes it is refused with the key, so the running
//! gateway never silently differs from its file.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use thoth_config::{Config, ConfigError};
use thoth_enrich::{Enricher, LoaderCommand};
use thoth_ingest::{Access, SharedAccess};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::Live;
use crate::gateway::sinks::{preflight, SinkChanges, SinkSet};
use crate::pipeline::Pipeline;

/// A request to reload, answered with the outcome.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<ReloadReport, ReloadError>>,
}

/// Why a reload was refused.
#[derive(Debug)]
pub enum ReloadError {
    /// The gateway runs the built-in default.
    NoConfigFile,
    /// The new config fails `validate` or changes a restart-only key.
    Invalid(Vec<ConfigError>),
    /// Applying failed half-way (a sink could not start after passing the pre-flight).
    Failed(String),
}

/// What a successful reload changed.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub reloaded: bool,
    pub config: String,
    pub sinks: SinkChanges,
    pub transform_changed: bool,
    pub access_changed: bool,
    pub mdm_changed: bool,
}

/// The restart-only keys (`thoth_config::reload_rules`) on which the running and the new
/// config differ, as errors.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<ConfigError> {
    thoth_config::reload_rules::restart_only_changes(running, new)
        .into_iter()
        .map(|key| ConfigError {
            path: key.to_string(),
            message: "changes only at restart; restart the gateway (or revert this key) to reload the rest".into(),
        })
        .collect()
}

/// Owns the running sinks and applies reloads one at a time.
pub struct Reloader {
    pub path: Option<PathBuf>,
    pub running: Config,
    pub sinks: SinkSet,
    pub pipeline: Arc<Pipeline>,
    pub access: SharedAccess,
    pub enricher: Arc<Enricher>,
    pub mdm: mpsc::Sender<LoaderCommand>,
    pub live: Arc<ArcSwap<Live>>,
    pub metrics: ReloadMetrics,
}

/// `thoth_config_reloads_total{outcome}`.
#[derive(Clone)]
pub struct ReloadMetrics(IntCounterVec);

impl ReloadMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let c = IntCounterVec::new(
            Opts::new(
                "thoth_config_reloads_total",
                "Config reloads, by outcome (ok / refused / failed).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(c.clone()))?;
        Ok(ReloadMetrics(c))
    }
}

impl Reloader {
    /// Serves reload requests (and SIGHUP) until `stop`; the caller then stops the sinks
    /// after the WAL is closed.
    pub async fn run(
        &mut self,
        requests: &mut mpsc::Receiver<ReloadRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
        loop {
            let reply = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    None
                }
                Some(request) = requests.recv() => Some(request.reply),
            };
            let outcome = self.reload().await;
            match &outcome {
                Ok(report) => {
                    self.metrics.0.with_label_values(&["ok"]).inc();
                    tracing::info!(
                        added = ?report.sinks.added, removed = ?report.sinks.removed,
                        restarted = ?report.sinks.restarted, transform = report.transform_changed,
                        access = report.access_changed, mdm = report.mdm_changed,
                        "config reloaded"
                    );
                }
                Err(ReloadError::Invalid(errors)) => {
                    self.metrics.0.with_label_values(&["refused"]).inc();
                    for e in errors {
                        tracing::error!(key = %e.path, "reload refused: {}", e.message);
                    }
                }
                Err(ReloadError::NoConfigFile) => {
                    self.metrics.0.with_label_values(&["refused"]).inc();
                    tracing::warn!("reload refused: running the built-in default, no config file");
                }
                Err(ReloadError::Failed(e)) => {
                    self.metrics.0.with_label_values(&["failed"]).inc();
                    tracing::error!("reload failed: {e}");
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    async fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoConfigFile)?;
        let path_for_check = path.clone();
        let checked = tokio::task::spawn_blocking(move || {
            crate::cli::validate::load_checked(&path_for_check)
        })
        .await
        .map_err(|e| ReloadError::Failed(e.to_string()))?
        .map_err(ReloadError::Invalid)?;
        let (new, programs) = (checked.config, checked.programs);
        let mut errors = restart_only_changes(&self.running, &new);
        errors.extend(preflight(&new));
        if !errors.is_empty() {
            return Err(ReloadError::Invalid(errors));
        }

        let access_changed =
            self.running.api.tokens != new.api.tokens || self.running.tenants != new.tenants;
        if access_changed {
            self.access.store(Arc::new(Access::new(&new)));
            self.enricher.set_tenants(&new.tenants);
        }
        let transform_changed = self.running.transform != new.transform;
        if transform_changed {
            self.pipeline.set_transform(programs.global.clone());
        }
        let mdm_changed = self.running.mdm != new.mdm;
        if mdm_changed {
            let (ack, done) = oneshot::channel();
            let command = LoaderCommand::Reconfigure {
                providers: new.mdm.providers.clone(),
                rules: new.mdm.fleet_rules.clone(),
                refresh_interval: new.mdm.refresh_interval,
                ack,
            };
            if self.mdm.send(command).await.is_ok() {
                let _ = done.await;
            }
        }
        let sinks = self.sinks.apply(&new, &programs).await;
        // Whatever happened to the sinks, the API shows the ones running.
        self.live.store(Arc::new(Live {
            sinks: self.sinks.health(),
            providers: new.mdm.providers.clone(),
        }));
        let sinks = sinks.map_err(|e| ReloadError::Failed(format!("{e:#}")))?;
        self.running = new;
        Ok(ReloadReport {
            reloaded: true,
            config: path.display().to_string(),
            sinks,
            transform_changed,
            access_changed,
            mdm_changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
data_dir = "/tmp/thoth-reload-test"
[api]
listen = "127.0.0.1:8686"
{extra}
[[api.tokens]]
admin = true
token = "admin"
[[tenants]]
id = "acme"
name = "Acme"
[sinks.out]
type = "file"
path = "/tmp/thoth-reload-test/out.ndjson"
"#
        );
        Config::from_toml(&text, std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn restart_only_keys_are_named() {
        let running = config("");
        assert!(restart_only_changes(&running, &config("")).is_empty());
        let mut moved = config("");
        moved.api.listen = "127.0.0.1:9999".parse().unwrap();
        moved.api.max_body_bytes += 1;
        let keys: Vec<String> = restart_only_changes(&running, &moved)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(keys, ["api.listen", "api.max_body_bytes"]);
        // Limits read once at start were once "reloaded" without taking effect.
        let mut limits = config("");
        limits.api.max_members += 1;
        limits.mdm.max_push_bytes += 1;
        let keys: Vec<String> = restart_only_changes(&running, &limits)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(keys, ["api.max_members", "mdm.max_push_bytes"]);
    }

    #[test]
    fn sinks_and_tenants_are_not_restart_only() {
        let running = config("");
        let mut new = config("");
        new.sinks.clear();
        new.tenants.push(thoth_config::Tenant {
            id: "globex".into(),
            name: "Globex".into(),
            compliance_profile: None,
        });
        assert!(restart_only_changes(&running, &new).is_empty());
    }
}
