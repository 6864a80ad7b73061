//! The sink driver: the WAL side of every sink, written once. It reads batches with the
//! sink's cursor ([`batch`]), decodes the records, routes them (tenants, condition, remap —
//! remap failures are dead-lettered), hands each batch to the sink's [`Delivery`] with up to
//! its concurrency in flight, and moves the cursor only past batches that are delivered or
//! dead-lettered, whatever order they finish in ([`cursor`]). Dead letters handed back by
//! `dlq replay` are routed and delivered the same way, outside the WAL.
//!
//! A destination only implements [`Delivery`]: what to do with a batch of routed events
//! (HTTP: encode, frame, send, retry; file: append and fsync; Kafka: produce), and the same
//! path for one event now ([`Delivery::probe`], for `verify` and `test-webhook`).

mod batch;
mod cursor;
mod event;

use std::sync::Arc;
use std::time::Duration;

use thoth_wal::record::EnrichedRecord;
use thoth_wal::{Entry, Reader};
use tokio::sync::{mpsc, watch};

pub use batch::BatchPolicy;
pub use cursor::CURSOR_INTERVAL;
pub use event::{route, Event, Routing};

use crate::concurrency::Slots;
use crate::context::SinkContext;
use crate::destination::BoxFuture;
use crate::route::Route;
use cursor::Progress;

/// How often a sink looks for dead letters handed back by `dlq replay`.
pub const REPLAY_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping sink waits for batches in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sink waits before reading again after the WAL could not be read.
const READ_RETRY: Duration = Duration::from_secs(1);

/// What one event sent now, bypassing the WAL, came to (`verify`, `test-webhook`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// The destination's HTTP status, when it answered one.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// What a sink does with the events the driver routed to it.
pub trait Delivery: Send + Sync + 'static {
    /// Delivers or dead-letters every event; `false` when `stop` turned true first (they stay
    /// in the WAL and are sent after the restart).
    fn deliver(&self, events: Vec<Event>, stop: watch::Receiver<bool>) -> BoxFuture<'_, bool>;

    /// Sends one event now through the same request path, once, and reports what happened.
    fn probe(&self, record: EnrichedRecord) -> BoxFuture<'_, ProbeResult>;

    /// Batches the sink may have in flight (adaptive or fixed for HTTP, one for the others).
    fn slots(&self) -> Arc<Slots>;

    /// Called once the sink has stopped (Kafka flushes its producer).
    fn close(&self) {}
}

/// A running sink: the driver and its delivery.
pub struct Sink {
    ctx: Arc<SinkContext>,
    delivery: Arc<dyn Delivery>,
    route: Route,
    reader: Reader,
    batch: BatchPolicy,
}

impl Sink {
    pub fn new(
        ctx: Arc<SinkContext>,
        delivery: Arc<dyn Delivery>,
        route: Route,
        reader: Reader,
        batch: BatchPolicy,
    ) -> Sink {
        // Shown from the start, not only after the first answer.
        ctx.counters
            .concurrency_limit
            .set(delivery.slots().limit() as i64);
        Sink {
            ctx,
            delivery,
            route,
            reader,
            batch,
        }
    }

    /// Delivers until `stop` turns true. Batches in flight finish their current attempt;
    /// whatever is not delivered stays in the WAL for the next start. A panic in any of the
    /// sink's tasks (a batch, the cursor writer, the replay) ends the whole sink with that
    /// panic, so its supervisor starts it again from its persisted cursor: a batch that
    /// vanished silently would hold the cursor back for good.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(cursor::commit_progress(
            self.reader.committer(),
            self.reader.cursor(),
            progress_rx,
            self.ctx.clone(),
        ));
        tasks.spawn(replay_dead_letters(
            self.ctx.clone(),
            self.delivery.clone(),
            self.route.clone(),
            stop.clone(),
        ));
        let slots = self.delivery.slots();
        loop {
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = tasks.join_next() => {
                    resume_if_panicked(done);
                    continue;
                }
                p = slots.acquire() => p,
            };
            let read = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                e = batch::collect(&mut self.reader, self.batch) => e,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(sink = %self.ctx.name, error = %e, "cannot read the WAL");
                    self.ctx.health.failed(format!("cannot read the WAL: {e}"));
                    tokio::time::sleep(READ_RETRY).await;
                    continue;
                }
            };
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let (start, end) = (first.seq, last.seq + 1);
            let _ = progress_tx.send(Progress::Begin(start, end));
            let (ctx, delivery, route) =
                (self.ctx.clone(), self.delivery.clone(), self.route.clone());
            let progress = progress_tx.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let events = events_from_wal(&ctx, &route, entries);
                if deliver_routed(&ctx, &*delivery, events, stop).await {
                    let _ = progress.send(Progress::Finish(start));
                }
                drop(permit);
            });
        }
        drop(progress_tx);
        // Batches in flight finish their attempt; the cursor writer then writes the last
        // position and the replay stops.
        let drained = tokio::time::timeout(STOP_TIMEOUT, async {
            while let Some(done) = tasks.join_next().await {
                resume_if_panicked(done);
            }
        });
        if drained.await.is_err() {
            tracing::warn!(sink = %self.ctx.name, "batches still in flight at the stop timeout were abandoned; they are sent again after the restart");
        }
        self.delivery.close();
    }
}

/// Carries a task's panic on to the task that awaited it.
fn resume_if_panicked(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The routed events of a batch of WAL entries. Records that cannot be decoded (a corrupt
/// or foreign entry, a version newer than this build) are logged and counted as filtered.
fn events_from_wal(ctx: &SinkContext, route: &Route, entries: Vec<Entry>) -> Vec<Routing> {
    let mut filtered = 0u64;
    let mut routed = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(record) = EnrichedRecord::from_entry(&entry) else {
            tracing::error!(sink = %ctx.name, seq = entry.seq, "skipping an unreadable WAL record");
            filtered += 1;
            continue;
        };
        match event::route(route, record, Some(entry.appended_ms)) {
            Routing::Skip => filtered += 1,
            r => routed.push(r),
        }
    }
    if filtered > 0 {
        ctx.counters.filtered.inc_by(filtered);
    }
    routed
}

/// Dead-letters the events whose remap failed, then delivers the others; `false` when
/// stopped first.
async fn deliver_routed(
    ctx: &SinkContext,
    delivery: &dyn Delivery,
    routed: Vec<Routing>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut events = Vec::with_capacity(routed.len());
    let mut failed = Vec::new();
    for r in routed {
        match r {
            Routing::Send(e) => events.push(e),
            Routing::Failed(e, reason) => failed.push((e, reason)),
            Routing::Skip => {}
        }
    }
    for (event, reason) in &failed {
        let one = std::iter::once(event);
        if !ctx.dead_letter(one, reason, "remap", &mut stop).await {
            return false;
        }
    }
    // Only events this sink delivers are pending: a batch it filters whole leaves no age.
    let Some(oldest) = events.iter().filter_map(|e| e.appended_ms).min() else {
        return events.is_empty() || delivery.deliver(events, stop).await;
    };
    ctx.health.pending_since(oldest);
    delivery.deliver(events, stop).await
}

/// Sends again what `dlq replay` handed back, outside the WAL, beside the sink's own batches
/// (not in one of its slots: an idle sink holds its slot while it waits for the WAL).
async fn replay_dead_letters(
    ctx: Arc<SinkContext>,
    delivery: Arc<dyn Delivery>,
    route: Route,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(REPLAY_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let Some(letters) = ctx.dlq.next_replay().await else {
            continue;
        };
        // Dead letters hold the enriched event: route (and remap) it again.
        let routed = letters
            .into_iter()
            .map(|l| {
                let json = bytes::Bytes::copy_from_slice(l.event.get().as_bytes());
                event::route(&route, EnrichedRecord::new(l.tenant_id, json), None)
            })
            .collect();
        if deliver_routed(&ctx, &*delivery, routed, stop.clone()).await {
            ctx.dlq.end_replay().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use thoth_wal::record::RecordWriter;
    use thoth_wal::{FrameBuilder, FsyncPolicy, Wal, WalOptions};

    use super::*;
    use crate::{DeadLetterQueue, SinkHealth, SinkMetrics};

    /// Takes every batch, or refuses (`false`: as if stopped) while `refuse` is set.
    struct Recorder {
        got: Mutex<Vec<String>>,
        refuse: std::sync::atomic::AtomicBool,
        slots: Arc<Slots>,
    }

    impl Delivery for Recorder {
        fn deliver(&self, events: Vec<Event>, _stop: watch::Receiver<bool>) -> BoxFuture<'_, bool> {
            let refuse = self.refuse.load(std::sync::atomic::Ordering::SeqCst);
            if !refuse {
                let mut got = self.got.lock().unwrap();
                for e in &events {
                    got.push(String::from_utf8(e.sent().json.to_vec()).unwrap());
                }
            }
            Box::pin(async move { !refuse })
        }
        fn probe(&self, _record: EnrichedRecord) -> BoxFuture<'_, ProbeResult> {
            unreachable!("not probed here")
        }
        fn slots(&self) -> Arc<Slots> {
            self.slots.clone()
        }
    }

    async fn append(wal: &Wal, events: &[(&str, &str)], garbage: bool) {
        let mut frame = FrameBuilder::new();
        let mut records = RecordWriter::default();
        for (tenant, json) in events {
            frame.push_with(|buf| {
                let Ok(()) = records.write(buf, tenant, |buf, _| {
                    buf.extend_from_slice(json.as_bytes());
                    Ok::<(), std::convert::Infallible>(())
                });
            });
        }
        if garbage {
            frame.push(&[0xff, 0x7f, 1]); // a version this build does not know
        }
        wal.append(frame).await.unwrap();
    }

    /// A sink of tenant `acme` over a fresh WAL, delivering to a [`Recorder`].
    fn sink_under_test(dir: &std::path::Path) -> (Wal, Arc<SinkContext>, Arc<Recorder>, Sink) {
        let opts = WalOptions::with_max_bytes(1 << 20, FsyncPolicy::Always);
        let (wal, _) = Wal::open(&dir.join("wal"), opts, &["s".to_string()]).unwrap();
        drop(wal.add_reader("s").unwrap());
        let metrics = SinkMetrics::new(&prometheus::Registry::new()).unwrap();
        let retry = thoth_config::RetryConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            max_duration: Duration::from_secs(1),
        };
        let ctx = SinkContext::new(
            "s",
            Arc::new(SinkHealth::default()),
            &metrics,
            DeadLetterQueue::new(&dir.join("dlq"), "s"),
            retry,
        );
        let tenants = ["acme".to_string()];
        let transform =
            thoth_transform::TransformMetrics::new(&prometheus::Registry::new()).unwrap();
        let route = Route::new("s", Some(&tenants), None, None, transform);
        let recorder = Arc::new(Recorder {
            got: Mutex::new(Vec::new()),
            refuse: false.into(),
            slots: Arc::new(Slots::new(Some(1), 1)),
        });
        let batch = BatchPolicy {
            max_events: 100,
            max_bytes: 1 << 20,
            timeout: Duration::ZERO,
        };
        let sink = Sink::new(
            ctx.clone(),
            recorder.clone(),
            route,
            wal.reader("s").unwrap(),
            batch,
        );
        (wal, ctx, recorder, sink)
    }

    #[tokio::test]
    async fn routes_delivers_and_moves_the_cursor_only_past_delivered_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, ctx, recorder, sink) = sink_under_test(dir.path());
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(sink.run(stop));

        append(
            &wal,
            &[("acme", r#"{"n":1}"#), ("globex", r#"{"n":2}"#)],
            true,
        )
        .await;
        append(&wal, &[("acme", r#"{"n":3}"#)], false).await;
        let until = |n: usize| {
            let recorder = recorder.clone();
            async move {
                while recorder.got.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), until(2))
            .await
            .unwrap();
        assert_eq!(*recorder.got.lock().unwrap(), [r#"{"n":1}"#, r#"{"n":3}"#]);
        // Another tenant's event and the unreadable record are filtered, not delivered.
        assert_eq!(ctx.counters.filtered.get(), 2);
        let cursor = wal.reader("s").unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while cursor.cursor() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the cursor moves past the delivered batches");

        // A batch that is not delivered (the sink stopping) holds the cursor back.
        recorder
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        append(&wal, &[("acme", r#"{"n":4}"#)], false).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(
            wal.reader("s").unwrap().cursor(),
            4,
            "the undelivered event stays in the WAL"
        );
        assert!(ctx.health.snapshot().oldest_pending_ms.is_some());
    }

    #[tokio::test]
    async fn a_batch_filtered_whole_leaves_nothing_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, ctx, recorder, sink) = sink_under_test(dir.path());
        let (stop_tx, stop) = watch::channel(false);
        let running = tokio::spawn(sink.run(stop));
        append(&wal, &[("globex", r#"{"n":1}"#)], false).await;
        let cursor = wal.reader("s").unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while cursor.cursor() < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the cursor moves past a filtered batch");
        stop_tx.send(true).unwrap();
        running.await.unwrap();
        assert_eq!(ctx.counters.filtered.get(), 1);
        assert!(recorder.got.lock().unwrap().is_empty());
        assert_eq!(
            ctx.health.snapshot().oldest_pending_ms,
            None,
            "no age for what is not ours"
        );
    }
}
