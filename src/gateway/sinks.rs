//! The running sinks: one task per configured sink, started at boot and started, stopped or
//! replaced by name when the config is reloaded.
//!
//! A sink stops after the batch in hand with its cursor persisted, so its replacement resumes
//! from the cursor: a reload loses nothing (at worst a batch is sent twice, same `event_id`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thoth_config::{Config, SinkConfig};
use thoth_sinks::{
    DeadLetterQueue, Route, Sink, SinkError, SinkHealth, SinkMetrics, SinkParts, Tap,
};
use thoth_transform::TransformMetrics;
use thoth_wal::Wal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::programs::Programs;
use crate::supervisor::Supervisor;

/// How long a sink gets to finish the batch in hand when it is stopped.
const SINK_STOP_TIMEOUT: Duration = Duration::from_secs(30);

struct RunningSink {
    config: SinkConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    health: Arc<SinkHealth>,
}

/// What a reload did to the sinks.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SinkChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
}

/// The sinks of the running config.
pub struct SinkSet {
    wal: Wal,
    dlq_dir: PathBuf,
    transform_metrics: TransformMetrics,
    sink_metrics: SinkMetrics,
    tap: Tap,
    supervisor: Supervisor,
    running: BTreeMap<String, RunningSink>,
}

impl SinkSet {
    pub fn new(
        wal: Wal,
        dlq_dir: PathBuf,
        transform_metrics: TransformMetrics,
        sink_metrics: SinkMetrics,
        tap: Tap,
        supervisor: Supervisor,
    ) -> SinkSet {
        SinkSet {
            wal,
            dlq_dir,
            transform_metrics,
            sink_metrics,
            tap,
            supervisor,
            running: BTreeMap::new(),
        }
    }

    /// Starts every sink of `config` (at boot; the WAL was opened with their cursors).
    pub fn start_all(&mut self, config: &Config, programs: &Programs) -> anyhow::Result<()> {
        for sink in config.sinks.values() {
            self.start(sink, programs)?;
        }
        Ok(())
    }

    /// Each sink's health, by name.
    pub fn health(&self) -> Vec<(String, Arc<SinkHealth>)> {
        self.running
            .iter()
            .map(|(name, s)| (name.clone(), s.health.clone()))
            .collect()
    }

    /// Makes the running sinks those of `config`: removed sinks stop (their cursor and
    /// backlog are dropped), changed ones restart from their cursor, new ones start at the end
    /// of the log, unchanged ones keep running untouched. Call [`preflight`] first.
    pub async fn apply(
        &mut self,
        config: &Config,
        programs: &Programs,
    ) -> anyhow::Result<SinkChanges> {
        let mut changes = SinkChanges::default();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, s)| config.sinks.get(*name) != Some(&s.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let sink = self.running.remove(&name).expect("listed above");
            stop(&name, sink).await;
            if config.sinks.contains_key(&name) {
                changes.restarted.push(name);
            } else {
                self.wal.remove_reader(&name)?;
                tracing::info!(sink = %name, "sink removed");
                changes.removed.push(name);
            }
        }
        for (name, sink) in &config.sinks {
            if self.running.contains_key(name) {
                continue;
            }
            if !changes.restarted.contains(name) {
                changes.added.push(name.clone());
            }
            self.start(sink, programs)?;
        }
        Ok(changes)
    }

    /// Stops every sink after the batch in hand.
    pub async fn stop_all(&mut self) {
        let running = std::mem::take(&mut self.running);
        for (name, sink) in running {
            let _ = sink.stop.send(true);
            stop(&name, sink).await;
        }
    }

    fn start(&mut self, sink: &SinkConfig, programs: &Programs) -> anyhow::Result<()> {
        let name = &sink.name;
        // Registers the reader (a new sink starts at the end of the log); every run of the
        // sink then reads from the persisted cursor.
        drop(self.wal.add_reader(name)?);
        let health = Arc::new(SinkHealth::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let source = SinkSource {
            config: sink.clone(),
            route: programs
                .route(sink, &self.transform_metrics)
                .with_tap(self.tap.clone()),
            wal: self.wal.clone(),
            dlq: DeadLetterQueue::new(&self.dlq_dir, name),
            metrics: self.sink_metrics.clone(),
            health: health.clone(),
        };
        let span = tracing::info_span!("sink", sink = %name);
        let task = self
            .supervisor
            .spawn_built(
                format!("sink:{name}"),
                move || source.build(),
                move |run: Sink| run.run(stop_rx.clone()).instrument(span.clone()),
            )
            .map_err(|e| anyhow::anyhow!("sinks.{name}: {e}"))?;
        tracing::info!(sink = %name, kind = sink.kind.type_name(), "sink started");
        self.running.insert(
            name.clone(),
            RunningSink {
                config: sink.clone(),
                stop: stop_tx,
                task,
                health,
            },
        );
        Ok(())
    }
}

/// What a run of one sink is built from.
struct SinkSource {
    config: SinkConfig,
    route: Route,
    wal: Wal,
    dlq: DeadLetterQueue,
    metrics: SinkMetrics,
    health: Arc<SinkHealth>,
}

impl SinkSource {
    /// A run of the sink, reading from its persisted cursor.
    fn build(&self) -> Result<Sink, SinkError> {
        let name = &self.config.name;
        let reader = self
            .wal
            .reader(name)
            .ok_or_else(|| SinkError::NoCursor(name.clone()))?;
        let parts = SinkParts {
            route: self.route.clone(),
            reader,
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            dlq: self.dlq.clone(),
        };
        thoth_sinks::build(&self.config, parts)
    }
}

async fn stop(name: &str, sink: RunningSink) {
    let _ = sink.stop.send(true);
    if tokio::time::timeout(SINK_STOP_TIMEOUT, sink.task)
        .await
        .is_err()
    {
        tracing::warn!(sink = %name, "the sink did not stop in time; its cursor stays where it was");
    }
}

/// Builds what each sink of `config` needs before anything running is touched (destination,
/// HTTP client and TLS roots, Kafka producer settings), so a reload that would fail to start a
/// sink is refused whole. Errors are keyed `sinks.NAME`.
pub fn preflight(config: &Config) -> Vec<thoth_config::ConfigError> {
    config
        .sinks
        .iter()
        .filter_map(|(name, sink)| {
            let e = thoth_sinks::preflight(sink).err()?;
            Some(thoth_config::ConfigError {
                path: format!("sinks.{name}"),
                message: e.to_string(),
            })
        })
        .collect()
}
