//! The delivery engine every HTTP sink runs on: read the sink's WAL cursor → keep its tenants'
//! events → batch (`max_events`, `max_bytes`, `timeout`) → encode → gzip → send with up to
//! `concurrency` requests in flight → classify → deliver, retry (exponential backoff with full
//! jitter, `Retry-After` pausing the whole sink), or dead-letter. The cursor moves only past
//! events that are delivered or dead-lettered, whatever order requests complete in.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thoth_config::{BatchConfig, Compression, Concurrency, HttpSinkConfig, RetryConfig};
use thoth_event::{now_rfc3339, record, FieldIndex};
use thoth_wal::{Committer, Entry, Reader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::{backoff, Jitter};
use crate::concurrency::{Answer, Slots};
use crate::destination::{Destination, ItemOutcome, Outcome};
use crate::dlq::{letters_for, DeadLetterQueue};
use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;
use crate::pause::Pause;
use crate::route::{Route, Routed};

/// Largest response body read from a destination; the rest is ignored.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How often a sink looks for dead letters handed back by `dlq replay`.
pub(crate) const REPLAY_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping sink waits for requests in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything an HTTP sink needs.
pub struct HttpSinkParts {
    pub name: String,
    pub destination: Arc<dyn Destination>,
    /// Tenants, condition and remap.
    pub route: Route,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub http: HttpSinkConfig,
    pub reader: Reader,
    pub health: Arc<SinkHealth>,
    pub metrics: SinkMetrics,
    pub dlq: DeadLetterQueue,
}

struct Shared {
    name: String,
    destination: Arc<dyn Destination>,
    route: Route,
    retry: RetryConfig,
    gzip: bool,
    client: reqwest::Client,
    health: Arc<SinkHealth>,
    metrics: SinkMetrics,
    dlq: DeadLetterQueue,
    pause: Pause,
    slots: Arc<Slots>,
}

/// A running HTTP sink.
pub struct HttpSink {
    shared: Arc<Shared>,
    reader: Reader,
    batch: BatchConfig,
}

/// One event on its way.
struct Item {
    tenant_id: String,
    /// What is sent: the enriched event (sharing the WAL frame's buffer), or the sink's
    /// remap of it.
    json: Bytes,
    /// The enriched event, when `json` is a remap (dead letters keep the enriched event).
    original: Option<Bytes>,
    /// Where the mapped fields are in `json`, from the WAL record (`None` after a remap).
    fields: Option<FieldIndex>,
    appended_ms: Option<u64>,
    encoded: Vec<u8>,
    attempts: u32,
    first_failed_at: Option<String>,
}

enum GroupResult {
    Done,
    Stopped,
    /// Too large: send in halves.
    Split(Vec<Item>),
}

enum Progress {
    Begin(u64, u64),
    Finish(u64),
}

impl HttpSink {
    /// Builds the sink and its HTTP client (TLS settings are checked here).
    pub fn new(parts: HttpSinkParts) -> Result<HttpSink, String> {
        let client = crate::client::build(&parts.http)?;
        let slots = Arc::new(match parts.http.concurrency {
            Concurrency::Fixed(n) => Slots::new(Some(n as usize), n as usize),
            Concurrency::Adaptive => Slots::new(None, parts.http.max_concurrency as usize),
        });
        // Shown from the start, not only after the first answer.
        parts
            .metrics
            .concurrency_limit
            .with_label_values(&[&parts.name])
            .set(slots.limit() as i64);
        Ok(HttpSink {
            shared: Arc::new(Shared {
                name: parts.name,
                destination: parts.destination,
                route: parts.route,
                retry: parts.retry,
                gzip: parts.http.compression == Compression::Gzip,
                client,
                health: parts.health,
                metrics: parts.metrics,
                dlq: parts.dlq,
                pause: Pause::default(),
                slots,
            }),
            reader: parts.reader,
            batch: parts.batch,
        })
    }

    /// Delivers until `stop` turns true. Requests in flight finish their current attempt;
    /// whatever is not delivered stays in the WAL for the next start. A panic in any of the
    /// sink's tasks (a batch, the cursor writer, the replay) ends the whole sink with that
    /// panic, so its supervisor starts it again from its persisted cursor: a batch that
    /// vanished silently would hold the cursor back for good.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(commit_progress(
            self.reader.committer(),
            self.reader.cursor(),
            progress_rx,
            self.shared.clone(),
        ));
        tasks.spawn(replay_dead_letters(self.shared.clone(), stop.clone()));
        let slots = self.shared.slots.clone();
        loop {
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = tasks.join_next() => {
                    resume_if_panicked(done);
                    continue;
                }
                p = slots.acquire() => p,
            };
            let entries = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                e = self.collect() => e,
            };
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let (start, end) = (first.seq, last.seq + 1);
            let _ = progress_tx.send(Progress::Begin(start, end));
            let shared = self.shared.clone();
            let progress = progress_tx.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let (items, failed) = shared.items_from_wal(entries);
                let mut stopping = stop.clone();
                for (item, reason) in failed {
                    if !shared
                        .dead_letter(vec![item], &reason, "remap", &mut stopping)
                        .await
                    {
                        return; // stopped: the batch stays in the WAL
                    }
                }
                if shared.deliver(items, stop).await {
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
            tracing::warn!(sink = %self.shared.name, "requests still in flight at the stop timeout were abandoned; they are sent again after the restart");
        }
    }

    /// A batch: waits for the first event, then up to `batch.timeout` for more until the
    /// batch is full.
    async fn collect(&mut self) -> Vec<Entry> {
        let max_events = self.batch.max_events as usize;
        let max_bytes = self.batch.max_bytes as usize;
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline = None;
        loop {
            match self.reader.read(
                max_events - entries.len(),
                max_bytes.saturating_sub(bytes).max(1),
            ) {
                Ok(more) => {
                    bytes += more.iter().map(|e| e.data.len()).sum::<usize>();
                    entries.extend(more);
                }
                Err(e) => {
                    tracing::error!(sink = %self.shared.name, error = %e, "cannot read the WAL");
                    self.shared
                        .health
                        .failed(format!("cannot read the WAL: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return entries;
                }
            }
            if entries.len() >= max_events || bytes >= max_bytes {
                return entries;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.batch.timeout);
            if entries.is_empty() {
                self.reader.wait().await;
                continue;
            }
            tokio::select! {
                _ = self.reader.wait() => {}
                _ = tokio::time::sleep_until(deadline) => return entries,
            }
        }
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

/// Least time between two cursor writes of a sink. Each write is two fsyncs; at full rate a
/// sink finishes a batch every few milliseconds, and a cursor written a little later only
/// means a few more events sent again after a crash (at least once; same event ids).
pub(crate) const CURSOR_INTERVAL: Duration = Duration::from_millis(50);

/// Persists the watermark as batches finish, at most every [`CURSOR_INTERVAL`]; the last
/// position is written when the sink stops.
async fn commit_progress(
    committer: Committer,
    cursor: u64,
    mut rx: mpsc::UnboundedReceiver<Progress>,
    shared: Arc<Shared>,
) {
    let mut watermark = crate::watermark::Watermark::new(cursor);
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
                tracing::error!(sink = %shared.name, error = %e, "cannot persist the sink cursor");
                shared
                    .health
                    .failed(format!("cannot persist the cursor: {e}"));
            }
            Err(e) => tracing::error!(sink = %shared.name, error = %e, "cursor task failed"),
        }
    }
}

/// Sends again what `dlq replay` handed back, outside the WAL.
async fn replay_dead_letters(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REPLAY_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let Some(letters) = shared.dlq.next_replay().await else {
            continue;
        };
        // Dead letters hold the enriched event: route (and remap) it again.
        let mut items = Vec::new();
        let mut failed = Vec::new();
        for l in letters {
            let event = Bytes::copy_from_slice(l.event.get().as_bytes());
            match shared.route_one(&l.tenant_id, event, None, None) {
                None => {}
                Some(Ok(item)) => items.push(item),
                Some(Err(failure)) => failed.push(failure),
            }
        }
        let mut stopping = stop.clone();
        for (item, reason) in failed {
            if !shared
                .dead_letter(vec![item], &reason, "remap", &mut stopping)
                .await
            {
                return;
            }
        }
        if shared.deliver(items, stop.clone()).await {
            shared.dlq.end_replay().await;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Shared {
    /// Routes one enriched event: `None` when the sink does not take it, `Err` when its remap
    /// failed (with the reason).
    fn route_one(
        &self,
        tenant: &str,
        json: Bytes,
        appended_ms: Option<u64>,
        fields: Option<FieldIndex>,
    ) -> Option<Result<Item, (Item, String)>> {
        let item = |json: Bytes, original: Option<Bytes>| Item {
            tenant_id: tenant.to_string(),
            json,
            fields: if original.is_none() { fields } else { None },
            original,
            appended_ms,
            encoded: Vec::new(),
            attempts: 0,
            first_failed_at: None,
        };
        match self.route.route(tenant, &json) {
            Routed::Skip => None,
            Routed::Send(std::borrow::Cow::Borrowed(_)) => Some(Ok(item(json, None))),
            Routed::Send(std::borrow::Cow::Owned(remapped)) => {
                Some(Ok(item(Bytes::from(remapped), Some(json))))
            }
            Routed::Failed(reason) => Some(Err((item(json, None), reason))),
        }
    }

    /// The events this sink takes, routed (remapped); and those whose remap failed.
    fn items_from_wal(&self, entries: Vec<Entry>) -> (Vec<Item>, Vec<(Item, String)>) {
        let mut filtered = 0u64;
        let mut items = Vec::with_capacity(entries.len());
        let mut failed = Vec::new();
        for e in entries {
            let Some(rec) = record::decode(&e.data) else {
                tracing::error!(sink = %self.name, seq = e.seq, "skipping an unreadable WAL record");
                filtered += 1;
                continue;
            };
            let json = e.data.slice_ref(rec.json);
            match self.route_one(rec.tenant_id, json, Some(e.appended_ms), rec.fields) {
                None => filtered += 1,
                Some(Ok(item)) => items.push(item),
                Some(Err(failure)) => failed.push(failure),
            }
        }
        if filtered > 0 {
            self.metrics
                .events
                .with_label_values(&[&self.name, "filtered"])
                .inc_by(filtered);
        }
        (items, failed)
    }

    /// Delivers or dead-letters every item. `false` when stopped first (the items stay in the
    /// WAL, to be sent after the restart).
    async fn deliver(&self, items: Vec<Item>, mut stop: watch::Receiver<bool>) -> bool {
        let items = self.encode(items).await;
        if let Some(oldest) = items.iter().filter_map(|i| i.appended_ms).min() {
            self.health.pending_since(oldest);
        }
        let mut groups: std::collections::VecDeque<Vec<Item>> = self.split_to_fit(items).into();
        while let Some(group) = groups.pop_front() {
            match self.deliver_group(group, &mut stop).await {
                GroupResult::Done => {}
                GroupResult::Stopped => return false,
                GroupResult::Split(mut group) => {
                    let second = group.split_off(group.len() / 2);
                    groups.push_front(second);
                    groups.push_front(group);
                }
            }
        }
        true
    }

    /// Groups of items whose request bodies stay within the destination's limit.
    fn split_to_fit(&self, items: Vec<Item>) -> Vec<Vec<Item>> {
        let Some(limit) = self.destination.max_request_bytes() else {
            return vec![items];
        };
        let framing = self.destination.framing();
        let overhead = framing.prefix.len() + framing.suffix.len();
        let mut groups = Vec::new();
        let mut current: Vec<Item> = Vec::new();
        let mut size = overhead;
        for item in items {
            let add = item.encoded.len()
                + if current.is_empty() {
                    0
                } else {
                    framing.separator.len()
                };
            if !current.is_empty() && size + add > limit {
                groups.push(std::mem::take(&mut current));
                size = overhead;
                size += item.encoded.len();
            } else {
                size += add;
            }
            current.push(item);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// Sends one group until it is delivered or dead-lettered.
    async fn deliver_group(
        &self,
        mut items: Vec<Item>,
        stop: &mut watch::Receiver<bool>,
    ) -> GroupResult {
        let mut attempt = 0u32;
        let mut first_failure: Option<Instant> = None;
        let mut jitter = Jitter::new();
        while !items.is_empty() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return GroupResult::Stopped,
                _ = self.pause.wait() => {}
            }
            let outcome = match self.destination.prepare(&self.client).await {
                Ok(()) => self.send(&items).await,
                Err(outcome) => outcome,
            };
            let (retry_reason, counts_toward_max, after) = match outcome {
                Outcome::Delivered | Outcome::AwaitAck(_) => {
                    self.delivered(std::mem::take(&mut items));
                    break;
                }
                Outcome::Reject { reason } => {
                    let all = std::mem::take(&mut items);
                    if !self.dead_letter(all, &reason, "rejected", stop).await {
                        return GroupResult::Stopped;
                    }
                    break;
                }
                Outcome::TooLarge { reason } => {
                    if items.len() > 1 {
                        tracing::info!(sink = %self.name, events = items.len(), %reason, "request too large; splitting the batch");
                        return GroupResult::Split(items);
                    }
                    let all = std::mem::take(&mut items);
                    let reason =
                        format!("{reason} (a single event larger than the destination takes)");
                    if !self.dead_letter(all, &reason, "rejected", stop).await {
                        return GroupResult::Stopped;
                    }
                    break;
                }
                Outcome::Partial(results) => {
                    let mut keep = Vec::new();
                    let mut done = Vec::new();
                    let mut rejected: Vec<(Item, String)> = Vec::new();
                    let mut reason = String::new();
                    let mut results = results.into_iter();
                    for item in items.drain(..) {
                        match results
                            .next()
                            .unwrap_or(ItemOutcome::Retry("no result for this event".into()))
                        {
                            ItemOutcome::Delivered => done.push(item),
                            ItemOutcome::Reject(r) => rejected.push((item, r)),
                            ItemOutcome::Retry(r) => {
                                reason = r;
                                keep.push(item);
                            }
                        }
                    }
                    self.delivered(done);
                    for (item, r) in rejected {
                        if !self.dead_letter(vec![item], &r, "rejected", stop).await {
                            return GroupResult::Stopped;
                        }
                    }
                    items = keep;
                    if items.is_empty() {
                        break;
                    }
                    (reason, true, None)
                }
                Outcome::Retry { after, reason } => {
                    self.health.failed(reason.clone());
                    (reason, true, after)
                }
                Outcome::Failing { reason } => {
                    self.health.failing(reason.clone());
                    (reason, false, None)
                }
            };
            attempt += 1;
            for item in &mut items {
                item.attempts += 1;
                item.first_failed_at.get_or_insert_with(now_rfc3339);
            }
            self.metrics.retries.with_label_values(&[&self.name]).inc();
            self.metrics
                .events
                .with_label_values(&[&self.name, "retried"])
                .inc_by(items.len() as u64);
            tracing::warn!(sink = %self.name, attempt, events = items.len(), reason = %retry_reason, "delivery failed; retrying");
            let first = *first_failure.get_or_insert_with(Instant::now);
            if counts_toward_max && first.elapsed() >= self.retry.max_duration {
                let reason = format!(
                    "{retry_reason} (still failing after retry.max_duration {:?})",
                    self.retry.max_duration
                );
                let all = std::mem::take(&mut items);
                if !self.dead_letter(all, &reason, "max_duration", stop).await {
                    return GroupResult::Stopped;
                }
                break;
            }
            // The destination is struggling: the whole sink (every slot) waits, for
            // `Retry-After` when given, else for the backoff delay.
            let delay = backoff(
                attempt,
                self.retry.initial_backoff,
                self.retry.max_backoff,
                jitter.next_unit(),
            );
            self.pause.extend(after.unwrap_or(delay));
        }
        GroupResult::Done
    }

    /// Encodes each item; those the destination cannot encode are dead-lettered.
    async fn encode(&self, items: Vec<Item>) -> Vec<Item> {
        let mut ok = Vec::with_capacity(items.len());
        let mut failed = Vec::new();
        for mut item in items {
            let mut out = Vec::with_capacity(item.json.len() + 256);
            match self.destination.encode_event(
                &item.tenant_id,
                &item.json,
                item.fields.as_ref(),
                &mut out,
            ) {
                Ok(()) => {
                    item.encoded = out;
                    ok.push(item);
                }
                Err(reason) => failed.push((item, reason)),
            }
        }
        // Never stopped: an encode failure is dead-lettered before the batch goes on.
        let (_keep, mut stop) = watch::channel(false);
        for (item, reason) in failed {
            self.dead_letter(
                vec![item],
                &format!("cannot encode: {reason}"),
                "encode",
                &mut stop,
            )
            .await;
        }
        ok
    }

    /// One request for `items`, classified.
    async fn send(&self, items: &[Item]) -> Outcome {
        let framing = self.destination.framing();
        let parts = || {
            let events = items.iter().enumerate().flat_map(|(i, item)| {
                let separator = if i > 0 { framing.separator } else { &b""[..] };
                [separator, &item.encoded[..]]
            });
            std::iter::once(framing.prefix)
                .chain(events)
                .chain(std::iter::once(framing.suffix))
        };
        let (sent, body) = if self.gzip && !self.destination.reads_plain_body() {
            // Compressed as it is assembled: no uncompressed copy of the batch.
            let mut gz = Gzip::with_capacity(items.len() * 512);
            parts()
                .filter(|part| !part.is_empty())
                .for_each(|part| gz.write(part));
            (Bytes::from(gz.finish()), Bytes::new())
        } else {
            let body = Bytes::from(parts().collect::<Vec<&[u8]>>().concat());
            let sent = if self.gzip {
                Bytes::from(gzip(&body))
            } else {
                body.clone() // shares the buffer
            };
            (sent, body)
        };
        self.metrics
            .batch_events
            .with_label_values(&[&self.name])
            .observe(items.len() as f64);

        let tenants: Vec<&str> = items.iter().map(|i| i.tenant_id.as_str()).collect();
        let request = self
            .destination
            .request(&self.client, sent, self.gzip, &body, &tenants);
        // Compressed, the plain body is not needed while the request is in flight.
        drop(body);
        let in_flight = self.slots.in_flight();
        let started = Instant::now();
        let result = request.send().await;
        let outcome = match result {
            Ok(mut resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let mut body = Vec::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                self.metrics
                    .requests
                    .with_label_values(&[&self.name, status.as_str()])
                    .inc();
                self.destination
                    .classify(status, &headers, &body, items.len())
            }
            Err(e) => {
                self.metrics
                    .requests
                    .with_label_values(&[&self.name, "error"])
                    .inc();
                if let Some(url) = e.url() {
                    self.destination.transport_error(url.as_str());
                }
                Outcome::Retry {
                    after: None,
                    reason: describe_error(&e),
                }
            }
        };
        let rtt = started.elapsed();
        self.metrics
            .request_seconds
            .with_label_values(&[&self.name])
            .observe(rtt.as_secs_f64());
        let limit = self.slots.record(rtt, load_answer(&outcome), in_flight);
        self.metrics
            .concurrency_limit
            .with_label_values(&[&self.name])
            .set(limit as i64);
        match outcome {
            Outcome::AwaitAck(id) => self.destination.await_ack(&self.client, id).await,
            other => other,
        }
    }

    fn delivered(&self, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        self.health.delivered();
        self.metrics
            .events
            .with_label_values(&[&self.name, "delivered"])
            .inc_by(items.len() as u64);
        let now = now_ms();
        let hist = self
            .metrics
            .delivery_seconds
            .with_label_values(&[&self.name]);
        for item in &items {
            if let Some(t) = item.appended_ms {
                hist.observe(now.saturating_sub(t) as f64 / 1000.0);
            }
        }
    }

    /// Writes dead letters durably, retrying the write until it works (or the sink stops:
    /// then `false`, and the events stay in the WAL).
    async fn dead_letter(
        &self,
        items: Vec<Item>,
        reason: &str,
        class: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if items.is_empty() {
            return true;
        }
        let letters = letters_for(
            &self.name,
            reason,
            items.iter().map(|item| {
                (
                    item.tenant_id.as_str(),
                    item.original.as_deref().unwrap_or(&item.json),
                    item.attempts + 1,
                    item.first_failed_at.as_deref(),
                )
            }),
        );
        self.dlq
            .append_until_stored(
                letters,
                class,
                &self.retry,
                &self.health,
                &self.metrics,
                stop,
            )
            .await
    }
}

/// What an outcome says about the destination's load, for the adaptive limit.
fn load_answer(outcome: &Outcome) -> Answer {
    match outcome {
        // 429, 503, HEC busy, 5xx, timeouts, refused connections.
        Outcome::Retry { .. } => Answer::BackPressure,
        Outcome::Partial(items) if items.iter().any(|i| matches!(i, ItemOutcome::Retry(_))) => {
            Answer::BackPressure
        }
        Outcome::Failing { .. } => Answer::Ignore,
        _ => Answer::Served,
    }
}

/// A gzip member (RFC 1952) written piece by piece: raw deflate at the fastest level framed
/// by hand, so the CRC-32 is crc32fast's (SIMD), not the deflate backend's portable one.
struct Gzip {
    deflate: flate2::write::DeflateEncoder<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u32,
}

impl Gzip {
    fn with_capacity(bytes: usize) -> Self {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=4 (fastest) OS=255 (unknown)
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
        let mut out = Vec::with_capacity(bytes + 64);
        out.extend_from_slice(&HEADER);
        Gzip {
            deflate: flate2::write::DeflateEncoder::new(out, flate2::Compression::fast()),
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    fn write(&mut self, part: &[u8]) {
        self.deflate
            .write_all(part)
            .expect("writing to a Vec cannot fail");
        self.crc.update(part);
        self.len = self.len.wrapping_add(part.len() as u32); // ISIZE: the length mod 2^32
    }

    fn finish(self) -> Vec<u8> {
        let mut out = self.deflate.finish().expect("writing to a Vec cannot fail");
        out.extend_from_slice(&self.crc.finalize().to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::with_capacity(body.len() / 4);
    gz.write(body);
    gz.finish()
}

/// A transport error as text for health and logs: kind and cause, never headers (tokens).
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "request timed out"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "response could not be read"
    } else {
        "transport error"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The result of [`send_one`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// Sends one enriched event to a destination now, bypassing the WAL (for `test-webhook` and
/// `verify`): encode, compress, authenticate, send, classify, wait for an acknowledgement.
pub async fn send_one(
    destination: &dyn Destination,
    http: &HttpSinkConfig,
    json: &[u8],
) -> ProbeResult {
    let started = std::time::Instant::now();
    let done = |ok: bool, status: Option<u16>, error: Option<String>| ProbeResult {
        ok,
        status,
        latency_ms: started.elapsed().as_millis() as u64,
        error,
    };
    let client = match crate::client::build(http) {
        Ok(c) => c,
        Err(e) => return done(false, None, Some(e)),
    };
    let framing = destination.framing();
    let mut body = framing.prefix.to_vec();
    let tenant = thoth_event::EnrichedView::parse(json)
        .ok()
        .and_then(|v| v.tenant_id.map(|t| t.into_owned()))
        .unwrap_or_default();
    if let Err(e) = destination.encode_event(&tenant, json, None, &mut body) {
        return done(
            false,
            None,
            Some(format!("cannot encode the test event: {e}")),
        );
    }
    body.extend_from_slice(framing.suffix);
    if let Err(outcome) = destination.prepare(&client).await {
        return done(false, None, Some(outcome_text(&outcome)));
    }
    let gzip_on = http.compression == Compression::Gzip;
    let raw = Bytes::from(body);
    let sent = if gzip_on {
        Bytes::from(gzip(&raw))
    } else {
        raw.clone()
    };
    let resp = match destination
        .request(&client, sent, gzip_on, &raw, &[tenant.as_str()])
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return done(false, None, Some(describe_error(&e))),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.bytes().await.unwrap_or_default();
    let mut outcome = destination.classify(status, &headers, &text, 1);
    if let Outcome::AwaitAck(id) = outcome {
        outcome = destination.await_ack(&client, id).await;
    }
    match outcome {
        Outcome::Delivered => done(true, Some(status.as_u16()), None),
        other => done(false, Some(status.as_u16()), Some(outcome_text(&other))),
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. }
        | Outcome::Failing { reason }
        | Outcome::Reject { reason }
        | Outcome::TooLarge { reason } => reason.clone(),
        Outcome::Partial(items) => format!("{items:?}"),
        Outcome::Delivered => "delivered".into(),
        Outcome::AwaitAck(id) => format!("awaiting acknowledgement {id}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn gzip_bodies_decode_to_what_was_sent() {
        let big: Vec<u8> = (0..1_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for body in [&b""[..], b"{\"event\":1}", &big] {
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&super::gzip(body)[..])
                .read_to_end(&mut decoded)
                .expect("a valid gzip member: header, deflate data, CRC-32 and length");
            assert_eq!(decoded, body);
        }
        // Written in pieces, the same member.
        let mut gz = super::Gzip::with_capacity(0);
        for part in big.chunks(7777) {
            gz.write(part);
        }
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz.finish()[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, big);
    }
}
