//! Moving a sink's cursor: batches finish in any order; the cursor moves over the finished
//! prefix ([`Watermark`]) and is written at most every [`CURSOR_INTERVAL`], on a blocking
//! thread (each write is two fsyncs and may delete segments), never on an async worker.

use std::sync::Arc;
use std::time::Duration;

use thoth_wal::Committer;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::context::SinkContext;
use crate::watermark::Watermark;

/// Least time between two cursor writes of a sink. At full rate a sink finishes a batch every
/// few milliseconds; a cursor written a little later only means a few more events sent again
/// after a crash (at least once; same event ids).
pub const CURSOR_INTERVAL: Duration = Duration::from_millis(50);

/// What the driver tells the cursor writer.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// A batch of entries `start..end` is on its way.
    Begin(u64, u64),
    /// The batch that began at `start` is delivered or dead-lettered.
    Finish(u64),
}

/// Persists the watermark as batches finish; the last position is written when the channel
/// closes (the sink stops).
pub async fn commit_progress(
    committer: Committer,
    cursor: u64,
    mut rx: mpsc::UnboundedReceiver<Progress>,
    ctx: Arc<SinkContext>,
) {
    let mut watermark = Watermark::new(cursor);
    let mut moved = None;
    let mut apply = |p: Progress, moved: &mut Option<u64>| match p {
        Progress::Begin(s, e) => watermark.begin(s, e),
        Progress::Finish(s) => {
            if let Some(w) = watermark.finish(s) {
                *moved = Some(w);
            }
        }
    };
    let mut next_write = Instant::now();
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(p) => apply(p, &mut moved),
            None => open = false,
        }
        // Coalesce: one cursor write for everything that finishes until the next is due.
        while open && Instant::now() < next_write {
            tokio::select! {
                _ = tokio::time::sleep_until(next_write) => break,
                p = rx.recv() => match p {
                    Some(p) => apply(p, &mut moved),
                    None => open = false,
                },
            }
        }
        while let Ok(p) = rx.try_recv() {
            apply(p, &mut moved);
        }
        let Some(next) = moved.take() else { continue };
        next_write = Instant::now() + CURSOR_INTERVAL;
        let c = committer.clone();
        match tokio::task::spawn_blocking(move || c.commit(next)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Not fatal: the events are delivered; a restart would send them again.
                tracing::error!(sink = %ctx.name, error = %e, "cannot persist the sink cursor");
                ctx.health.failed(format!("cannot persist the cursor: {e}"));
            }
            Err(e) => tracing::error!(sink = %ctx.name, error = %e, "cursor task failed"),
        }
    }
}
