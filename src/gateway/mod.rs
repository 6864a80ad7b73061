//! `thoth-gateway run`: wires the stages together and runs until SIGTERM / SIGINT.
//!
//! Shutdown order: stop taking batches (503), stop accepting connections and let requests in
//! flight finish, close the WAL (drains queued appends), then stop sinks after the batch in
//! hand (cursors persisted).

pub mod delivery_pressure;
pub mod fleet_checkins;
pub mod ingest_replay;
pub mod mdm_share;
pub mod reload;
pub mod sinks;
pub mod stale;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::Registry;
use thoth_config::{Config, FsyncMode};
use thoth_enrich::{Enricher, MdmLoader, MdmStatus};
use thoth_event::Limits;
use thoth_ingest::{
    Access, HookSource, IngestMetrics, IngestState, KafkaMetrics, KafkaSource, ListenerLimits,
    Rejects, SharedAccess,
};
use thoth_sinks::{DeadLetter, DeadLetterQueue, SinkMetrics, Tap};
use thoth_state::{SharedState, StateMetrics};
use thoth_transform::TransformMetrics;
use thoth_wal::{FsyncPolicy, Wal, WalOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiState, Live, WalGauges};
use crate::gateway::reload::{ReloadMetrics, Reloader};
use crate::gateway::sinks::SinkSet;
use crate::pipeline::{Pipeline, INGEST_DLQ};
use crate::programs::Programs;
use crate::supervisor::Supervisor;

/// How often MDM snapshot files are checked for changes (a `stat` each).
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a request body may take to arrive (docs/http-api.md, Limits).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the gateway on `config` (read from `path`, `None` for the built-in default, which
/// cannot be reloaded).
pub async fn run(config: Config, programs: Programs, path: Option<PathBuf>) -> anyhow::Result<()> {
    let registry = Registry::new();
    let transform_metrics = TransformMetrics::new(&registry)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;

    let sink_names: Vec<String> = config.sinks.keys().cloned().collect();
    let fsync = match config.wal.fsync {
        FsyncMode::Always => FsyncPolicy::Always,
        FsyncMode::Interval(d) => FsyncPolicy::Interval(d),
    };
    let mut wal_opts = WalOptions::with_max_bytes(config.wal.max_bytes, fsync);
    if let Some(s) = config.wal.segment_bytes {
        wal_opts.segment_bytes = s;
    }
    let wal_dir = config.wal_dir();
    let (wal, recovery) = Wal::open(&wal_dir, wal_opts, &sink_names)
        .with_context(|| format!("opening the write-ahead log in {}", wal_dir.display()))?;
    tracing::info!(
        dir = %wal_dir.display(),
        segments = recovery.segments,
        frames = recovery.frames,
        truncated_bytes = recovery.truncated_bytes,
        corrupt_regions = recovery.corrupt_regions.len(),
        next_seq = recovery.next_seq,
        "write-ahead log open"
    );

    let enricher = Enricher::new(&config, &registry)?;
    for p in &config.mdm.providers {
        let removed = thoth_enrich::remove_stale_staging(p);
        if removed > 0 {
            tracing::info!(provider = %p.name, files = removed, "removed snapshot staging files a stopped gateway left behind");
        }
    }
    let mut loader = MdmLoader::new(&config.mdm.providers, &config.mdm.fleet_rules, &registry)?
        .after_install(crate::release_freed_memory);
    // The last good snapshots first: enrichment works at once even when an MDM API is down.
    loader.load_into(&enricher);
    // After the snapshots: state saved by older builds learns which endpoints they know.
    let checkins_file = config.data_dir.join("checkins.json");
    let index = enricher.index();
    match enricher.checkins().restore(
        &checkins_file,
        time::OffsetDateTime::now_utc(),
        |tenant, endpoint| index.lookup(tenant, Some(endpoint), None, None).is_some(),
    ) {
        Ok(n) => tracing::info!(endpoints = n, "check-in state restored"),
        Err(e) => {
            tracing::error!(path = %checkins_file.display(), error = %e, "cannot restore check-in state")
        }
    }
    drop(index);
    let mdm_status = MdmStatus::default();
    let (mdm_tx, mdm_rx) = tokio::sync::mpsc::channel(16);

    let (stop_tx, stop_rx) = watch::channel(false);
    let supervisor = Supervisor::new(&registry)?;
    let shared = SharedState::start(&config.state, StateMetrics::new(&registry)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let thoth_config::StateConfig::Redis(r) = &config.state {
        tracing::info!(replica_id = %r.replica_id, key_prefix = %r.key_prefix, "shared state: redis");
        if !shared.wait_ready(std::time::Duration::from_secs(2)).await {
            tracing::warn!(error = ?shared.status().last_error, "shared state not reachable yet: starting on local state; it is used once it answers");
        }
    }
    let loader = loader.share(shared.clone());
    if shared.backend() == "redis" {
        let task = (
            config.mdm.providers.clone(),
            shared.clone(),
            mdm_tx.clone(),
            stop_rx.clone(),
        );
        supervisor.spawn("mdm_share", move || {
            let (providers, shared, loader, stop) = task.clone();
            mdm_share::share(providers, shared, loader, stop)
        });
    }
    let sink_metrics = SinkMetrics::new(&registry)?;
    let tap = Tap::default();
    let mut sinks = SinkSet::new(
        wal.clone(),
        config.dlq_dir(),
        transform_metrics.clone(),
        sink_metrics.clone(),
        tap.clone(),
        supervisor.clone(),
    );
    sinks.start_all(&config, &programs)?;
    {
        // The loader's state outlives a panicking run (a tokio mutex is not poisoned).
        let state = Arc::new(tokio::sync::Mutex::new((loader, mdm_rx)));
        let (enricher, status, stop) = (enricher.clone(), mdm_status.clone(), stop_rx.clone());
        let refresh_interval = config.mdm.refresh_interval;
        supervisor.spawn("mdm", move || {
            let (state, enricher, status, mut stop) = (
                state.clone(),
                enricher.clone(),
                status.clone(),
                stop.clone(),
            );
            async move {
                let (loader, commands) = &mut *state.lock().await;
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                loader
                    .watch(
                        enricher,
                        SNAPSHOT_CHECK_INTERVAL,
                        refresh_interval,
                        status,
                        commands,
                        stopped,
                    )
                    .await;
            }
        });
    }

    let hooks_dir = config.data_dir.join("hooks");
    let mut hooks = std::collections::HashMap::new();
    for source in &config.webhook_sources {
        let hook = HookSource::open(source, &hooks_dir).with_context(|| {
            format!(
                "sources.webhooks {:?}: opening {}",
                source.name,
                hooks_dir.display()
            )
        })?;
        hooks.insert(source.name.clone(), hook);
    }
    let shutting_down = Arc::new(AtomicBool::new(false));
    let pipeline = Arc::new(Pipeline {
        enricher: enricher.clone(),
        transform: ArcSwapOption::new(programs.global.clone()),
        ingest_dlq: DeadLetterQueue::new(&config.dlq_dir(), INGEST_DLQ),
        metrics: transform_metrics.clone(),
        wal: wal.clone(),
        tap: tap.clone(),
    });
    let limits = Limits {
        max_event_bytes: config.api.max_event_bytes as usize,
        max_depth: config.api.max_depth as usize,
        max_events: config.api.max_batch_events as usize,
        max_members: config.api.max_members as usize,
    };
    let access: SharedAccess = Arc::new(ArcSwap::from_pointee(Access::new(&config)));
    let submit: Arc<dyn thoth_ingest::Submit> = pipeline.clone();
    let kafka_metrics = KafkaMetrics::new(&registry)?;
    let rejects: Arc<dyn Rejects> = Arc::new(IngestRejects(DeadLetterQueue::new(
        &config.dlq_dir(),
        INGEST_DLQ,
    )));
    let mut source_tasks = Vec::new();
    for source in &config.kafka_sources {
        let (source, submit, rejects, access, metrics) = (
            source.clone(),
            submit.clone(),
            rejects.clone(),
            access.clone(),
            kafka_metrics.clone(),
        );
        let name = source.name.clone();
        let stop = stop_rx.clone();
        let task = supervisor
            .spawn_built(
                format!("kafka:{name}"),
                move || {
                    KafkaSource::new(
                        &source,
                        submit.clone(),
                        rejects.clone(),
                        access.clone(),
                        limits,
                        metrics.clone(),
                    )
                },
                move |task: KafkaSource| task.run(stop.clone()),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
        source_tasks.push(task);
    }
    {
        let (dlq, submit, access, stop) = (
            DeadLetterQueue::new(&config.dlq_dir(), INGEST_DLQ),
            submit.clone(),
            access.clone(),
            stop_rx.clone(),
        );
        supervisor.spawn("ingest_replay", move || {
            crate::gateway::ingest_replay::run(
                dlq.clone(),
                submit.clone(),
                access.clone(),
                limits,
                stop.clone(),
            )
        });
    }
    let fleet: stale::Fleet = (shared.backend() == "redis").then(|| {
        enricher.checkins().outbox().enable();
        let view = Arc::new(fleet_checkins::FleetView::default());
        let task = (
            enricher.clone(),
            shared.clone(),
            view.clone(),
            stop_rx.clone(),
        );
        supervisor.spawn("checkin_sync", move || {
            let (enricher, shared, view, stop) = task.clone();
            fleet_checkins::sync(enricher, shared, view, stop)
        });
        (shared.clone(), view)
    });
    let sweeper = {
        let (enricher, submit, stop) = (enricher.clone(), submit.clone(), stop_rx.clone());
        supervisor.spawn("stale_sweeper", move || {
            stale::sweep(
                enricher.clone(),
                submit.clone(),
                checkins_file.clone(),
                fleet.clone(),
                stop.clone(),
            )
        })
    };
    let batch_slots = thoth_ingest::BatchSlots::for_this_machine();
    let ingest = Arc::new(IngestState {
        hooks,
        submit,
        access: access.clone(),
        limits,
        max_body_bytes: config.api.max_body_bytes as usize,
        body_timeout: BODY_READ_TIMEOUT,
        shutting_down: shutting_down.clone(),
        metrics: IngestMetrics::new(&registry)?,
        shared: shared.clone(),
        batch_slots: batch_slots.clone(),
    });
    let live = Arc::new(ArcSwap::from_pointee(Live {
        sinks: sinks.health(),
        providers: config.mdm.providers.clone(),
    }));
    {
        let yielding = delivery_pressure::gauge(&registry)?;
        let task = (wal.clone(), live.clone(), batch_slots, stop_rx.clone());
        supervisor.spawn("delivery_pressure", move || {
            let (wal, live, slots, stop) = task.clone();
            delivery_pressure::watch_lags(wal, live, slots, yielding.clone(), stop)
        });
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let reloader = Reloader {
        path,
        running: config.clone(),
        sinks,
        pipeline,
        access: access.clone(),
        enricher: enricher.clone(),
        mdm: mdm_tx.clone(),
        live: live.clone(),
        metrics: ReloadMetrics::new(&registry)?,
    };
    let reloader = Arc::new(tokio::sync::Mutex::new((reloader, reload_rx)));
    let reloading = {
        let (reloader, stop) = (reloader.clone(), stop_rx.clone());
        supervisor.spawn("reloader", move || {
            let (reloader, stop) = (reloader.clone(), stop.clone());
            async move {
                let (reloader, requests) = &mut *reloader.lock().await;
                reloader.run(requests, stop).await;
            }
        })
    };
    let api_state = Arc::new(ApiState {
        wal_gauges: WalGauges::new(&registry)?,
        registry,
        wal: wal.clone(),
        enricher,
        sink_metrics,
        live,
        access,
        mdm_status,
        mdm_reload: mdm_tx,
        reload: reload_tx,
        tap,
        shutting_down: shutting_down.clone(),
        max_push_bytes: config.mdm.max_push_bytes as usize,
        body_timeout: BODY_READ_TIMEOUT,
        supervisor,
        shared,
    });
    let app = thoth_ingest::router(ingest).merge(api::router(api_state));

    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if config.api.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(scheme, "listening on {addr}");

    let limits = ListenerLimits {
        max_connections: config.api.max_connections as usize,
        ..ListenerLimits::default()
    };
    let tls = match &config.api.tls {
        Some(t) => Some(Arc::new(
            thoth_ingest::TlsSetup::new(t).map_err(|e| anyhow::anyhow!("api.tls: {e}"))?,
        )),
        None => None,
    };
    let flag = shutting_down.clone();
    thoth_ingest::serve(listener, app, limits, tls, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: refusing new batches, finishing requests in flight");
        flag.store(true, Ordering::Release);
    })
    .await;

    let _ = stop_tx.send(true);
    let _ = reloading.await;
    for task in source_tasks {
        let _ = task.await; // commits what is in the WAL
    }
    let _ = sweeper.await; // saves check-in state; its last alerts are in the WAL first
    let closing = wal.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    reloader.lock().await.0.sinks.stop_all().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Kafka messages the gateway cannot accept, into the `ingest` dead-letter queue.
struct IngestRejects(DeadLetterQueue);

impl Rejects for IngestRejects {
    fn reject(&self, payload: &[u8], reason: &str, origin: &str) -> std::io::Result<()> {
        let mut letter = DeadLetter::new(
            INGEST_DLQ,
            "",
            payload,
            reason,
            1,
            thoth_event::now_rfc3339(),
        );
        letter.origin = Some(origin.to_string());
        self.0.append(&[letter])
    }
}
