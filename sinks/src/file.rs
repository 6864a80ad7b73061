//! The `file` sink's delivery: appends the events' lines (enriched NDJSON, or the remap's
//! output) to the file with one write and an fsync on a blocking thread. A write that fails
//! (a full disk) is retried with backoff until it works: a dead letter would go to the same
//! disk, so the events wait in the WAL instead.

use std::path::PathBuf;
use std::sync::Arc;

use thoth_wal::record::EnrichedRecord;
use tokio::sync::watch;

use crate::append::append_lines;
use crate::concurrency::Slots;
use crate::context::SinkContext;
use crate::destination::{BoxFuture, Outcome};
use crate::driver::{Delivery, Event, ProbeResult};
use crate::retry::{deliver_groups, Attempt};

/// A file sink's delivery.
pub struct FileDelivery {
    ctx: Arc<SinkContext>,
    path: PathBuf,
    /// One batch at a time: lines keep the WAL's order.
    slots: Arc<Slots>,
}

impl FileDelivery {
    pub fn new(ctx: Arc<SinkContext>, path: PathBuf) -> FileDelivery {
        FileDelivery {
            ctx,
            path,
            slots: Arc::new(Slots::new(Some(1), 1)),
        }
    }

    /// Appends the lines of `events`, durably.
    async fn append(&self, events: &[Event]) -> Result<(), String> {
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.sent().json.len() + 1).sum());
        for e in events {
            buf.extend_from_slice(&e.sent().json);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || append_lines(&path, &buf)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write {}: {e}", self.path.display())),
            Err(e) => Err(format!("the write of {} failed: {e}", self.path.display())),
        }
    }
}

impl Attempt<Event> for FileDelivery {
    fn send<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.append(events).await {
                Ok(()) => Outcome::Delivered,
                Err(reason) => Outcome::Retry {
                    after: None,
                    reason,
                },
            }
        })
    }
}

impl Delivery for FileDelivery {
    fn deliver(&self, events: Vec<Event>, mut stop: watch::Receiver<bool>) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // No max_duration: retried until the file can be written.
            deliver_groups(&self.ctx, vec![events], None, self, &mut stop).await
        })
    }

    /// Appends one line now: the directory exists and is writable, the line is on disk. One
    /// `write` on an `O_APPEND` file, so it does not interleave with a running gateway's lines.
    fn probe(&self, record: EnrichedRecord) -> BoxFuture<'_, ProbeResult> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = self.append(&[Event::new(record, None)]).await;
            ProbeResult {
                ok: result.is_ok(),
                status: None,
                latency_ms: started.elapsed().as_millis() as u64,
                error: result.err(),
            }
        })
    }

    fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }
}
