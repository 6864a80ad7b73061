//! The `file` sink: appends enriched NDJSON to a file and fsyncs before it moves its cursor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thoth_config::{BatchConfig, RetryConfig, SinkConfig};
use thoth_event::{now_rfc3339, record};
use thoth_wal::Reader;
use tokio::sync::watch;

use crate::append::append_lines;
use crate::backoff::{wait_backoff, Jitter};
use crate::dlq::{DeadLetter, DeadLetterQueue};
use crate::engine::{CURSOR_INTERVAL, REPLAY_CHECK_INTERVAL};
use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;
use crate::route::{Route, Routed};

/// A running file sink.
pub struct FileSink {
    name: String,
    path: PathBuf,
    route: Route,
    dlq: DeadLetterQueue,
    batch: BatchConfig,
    retry: RetryConfig,
    reader: Reader,
    health: Arc<SinkHealth>,
    metrics: SinkMetrics,
}

impl FileSink {
    /// A file sink for `config`, appending to `path`, reading with `reader`; events whose
    /// `remap` fails go to `dlq`.
    pub fn new(
        config: &SinkConfig,
        path: PathBuf,
        route: Route,
        dlq: DeadLetterQueue,
        reader: Reader,
        health: Arc<SinkHealth>,
        metrics: SinkMetrics,
    ) -> FileSink {
        FileSink {
            name: config.name.clone(),
            path,
            route,
            dlq,
            batch: config.batch,
            retry: config.retry,
            reader,
            health,
            metrics,
        }
    }

    /// Delivers until `stop` turns true; the batch in hand is finished first (or, while the
    /// file cannot be written, left in the WAL for the next start). Dead letters handed back
    /// by `dlq replay` are written too, within a second.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut jitter = Jitter::new();
        let mut buf = Vec::new();
        // The cursor is written at most every CURSOR_INTERVAL (see the HTTP engine), and
        // when the sink stops or goes idle.
        let mut unsaved: Option<u64> = None;
        let mut next_save = tokio::time::Instant::now();
        let mut replay_tick = tokio::time::interval(REPLAY_CHECK_INTERVAL);
        replay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = self.reader.wait() => {}
                _ = stop.changed() => continue,
                _ = replay_tick.tick() => {
                    if !self.replay(&mut jitter, &mut stop).await {
                        break;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_save), if unsaved.is_some() => {
                    if let Some(seq) = unsaved.take() {
                        self.save_cursor(seq);
                    }
                    continue;
                }
            }
            let entries = match self.reader.read(
                self.batch.max_events as usize,
                self.batch.max_bytes as usize,
            ) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot read the WAL");
                    self.health.failed(format!("cannot read the WAL: {e}"));
                    tokio::time::sleep(self.retry.initial_backoff).await;
                    continue;
                }
            };
            let Some(last) = entries.last() else { continue };
            let next_seq = last.seq + 1;
            if let Some(first) = entries.first() {
                self.health.pending_since(first.appended_ms);
            }
            let mut unreadable = 0u64;
            let records: Vec<(&str, &[u8])> = entries
                .iter()
                .filter_map(|e| match record::decode(&e.data) {
                    Some(rec) => Some((rec.tenant_id, rec.json)),
                    None => {
                        tracing::error!(sink = %self.name, seq = e.seq, "skipping an unreadable WAL record");
                        unreadable += 1;
                        None
                    }
                })
                .collect();
            buf.clear();
            let written = self.write(records.into_iter(), buf, &mut jitter, &mut stop);
            let Some(back) = written.await else {
                break; // stopping: the batch stays in the WAL
            };
            buf = back;
            self.metrics
                .events
                .with_label_values(&[&self.name, "filtered"])
                .inc_by(unreadable);
            let now_ms = now_ms();
            let hist = self
                .metrics
                .delivery_seconds
                .with_label_values(&[&self.name]);
            for e in &entries {
                hist.observe(now_ms.saturating_sub(e.appended_ms) as f64 / 1000.0);
            }
            unsaved = Some(next_seq);
            if tokio::time::Instant::now() >= next_save {
                self.save_cursor(next_seq);
                unsaved = None;
                next_save = tokio::time::Instant::now() + CURSOR_INTERVAL;
            }
        }
        if let Some(seq) = unsaved {
            self.save_cursor(seq); // what was delivered before the stop
        }
    }

    /// Writes what `dlq replay` handed back; `false` when stopped first (the entries stay
    /// handed back, for the next start).
    async fn replay(&self, jitter: &mut Jitter, stop: &mut watch::Receiver<bool>) -> bool {
        let Some(letters) = self.dlq.next_replay().await else {
            return true;
        };
        let records = letters
            .iter()
            .map(|l| (l.tenant_id.as_str(), l.event.get().as_bytes()));
        if self
            .write(records, Vec::new(), jitter, stop)
            .await
            .is_none()
        {
            return false;
        }
        self.dlq.end_replay().await;
        true
    }

    /// Routes `records` (tenant, enriched JSON) and appends the lines of those this sink
    /// takes, durably; events whose remap fails are dead-lettered. Counts what it did. `None`
    /// when stopped before it was done.
    async fn write<'a>(
        &self,
        records: impl Iterator<Item = (&'a str, &'a [u8])>,
        mut buf: Vec<u8>,
        jitter: &mut Jitter,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<u8>> {
        let (lines, filtered, failed) = self.encode(records, &mut buf);
        if !failed.is_empty() && !self.dead_letter(failed, stop).await {
            return None;
        }
        if lines > 0 {
            buf = self.write_until_done(buf, jitter, stop).await?;
        }
        self.metrics
            .events
            .with_label_values(&[&self.name, "delivered"])
            .inc_by(lines);
        self.metrics
            .events
            .with_label_values(&[&self.name, "filtered"])
            .inc_by(filtered);
        self.health.delivered();
        Some(buf)
    }

    fn save_cursor(&mut self, next_seq: u64) {
        if let Err(e) = self.reader.commit(next_seq) {
            // Not fatal: the events are delivered; a restart would deliver them again.
            tracing::error!(sink = %self.name, error = %e, "cannot persist the sink cursor");
            self.health
                .failed(format!("cannot persist the cursor: {e}"));
        }
    }

    /// Appends the lines of the events this sink takes; returns (lines, filtered, dead
    /// letters for events whose remap failed).
    fn encode<'a>(
        &self,
        records: impl Iterator<Item = (&'a str, &'a [u8])>,
        buf: &mut Vec<u8>,
    ) -> (u64, u64, Vec<DeadLetter>) {
        let mut lines = 0;
        let mut filtered = 0;
        let mut failed = Vec::new();
        for (tenant_id, json) in records {
            match self.route.route(tenant_id, json) {
                Routed::Skip => filtered += 1,
                Routed::Send(json) => {
                    buf.extend_from_slice(&json);
                    buf.push(b'\n');
                    lines += 1;
                }
                Routed::Failed(reason) => failed.push(DeadLetter::new(
                    &self.name,
                    tenant_id,
                    json,
                    &reason,
                    1,
                    now_rfc3339(),
                )),
            }
        }
        (lines, filtered, failed)
    }

    /// Writes dead letters, retrying until it works; `false` when asked to stop first.
    async fn dead_letter(
        &self,
        letters: Vec<DeadLetter>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        self.dlq
            .append_until_stored(
                letters,
                "remap",
                &self.retry,
                &self.health,
                &self.metrics,
                stop,
            )
            .await
    }

    /// Writes `buf` until it succeeds, backing off between attempts. `None` when asked to
    /// stop before it succeeded.
    async fn write_until_done(
        &self,
        mut buf: Vec<u8>,
        jitter: &mut Jitter,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<u8>> {
        let mut attempt = 0u32;
        loop {
            let path = self.path.clone();
            let (result, back) = tokio::task::spawn_blocking(move || {
                let r = append_lines(&path, &buf);
                (r, buf)
            })
            .await
            .expect("the file write task does not panic");
            buf = back;
            match result {
                Ok(()) => return Some(buf),
                Err(e) => {
                    attempt += 1;
                    let msg = format!("cannot write {}: {e}", self.path.display());
                    tracing::warn!(sink = %self.name, attempt, error = %msg, "file sink write failed; retrying");
                    self.health.failed(msg);
                    self.metrics.retries.with_label_values(&[&self.name]).inc();
                    if !wait_backoff(&self.retry, attempt, jitter.next_unit(), stop).await {
                        return None;
                    }
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends one event line now, bypassing the WAL (for `verify`): the directory exists and is
/// writable, the line is on disk. One `write` on an `O_APPEND` file, so it does not interleave
/// with a running gateway's lines.
pub fn append_one(path: &Path, json: &[u8]) -> crate::ProbeResult {
    let started = std::time::Instant::now();
    let mut line = json.to_vec();
    line.push(b'\n');
    let result = append_lines(path, &line);
    crate::ProbeResult {
        ok: result.is_ok(),
        status: None,
        latency_ms: started.elapsed().as_millis() as u64,
        error: result
            .err()
            .map(|e| format!("cannot append to {}: {e}", path.display())),
    }
}
