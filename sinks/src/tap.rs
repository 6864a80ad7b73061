//! Live inspection (`GET /v1/tap`): copies of events at a pipeline stage for whoever is
//! watching, sampled and rate-limited so a tap never slows the pipeline.
//!
//! With nobody watching, a stage pays one atomic load per event. A watcher gets at most its
//! rate per second (the rest is skipped) through a bounded channel that is never waited on: a
//! watcher that reads slowly misses events instead of holding the pipeline back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Lines a watcher may have waiting before more are dropped.
const WATCHER_BUFFER: usize = 256;
/// The highest rate a watcher may ask for (events per second).
pub const MAX_TAP_RATE: u32 = 1000;

/// What a watcher wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapFilter {
    /// `ingest`, `enriched` or `sink:NAME`.
    pub stage: String,
    pub tenant: Option<String>,
    /// Events per second at most.
    pub rate: u32,
}

struct Watcher {
    filter: TapFilter,
    tx: mpsc::Sender<Bytes>,
    /// Current one-second window (seconds since the epoch) and events sent in it.
    window: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// The tap points of one gateway; clone freely.
#[derive(Clone, Default)]
pub struct Tap {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    watchers: Mutex<Vec<Arc<Watcher>>>,
}

/// A watcher's end: its lines, and its registration (dropped with it).
pub struct TapSubscription {
    pub lines: mpsc::Receiver<Bytes>,
    watcher: Arc<Watcher>,
    tap: Tap,
}

impl TapSubscription {
    /// Events skipped for this watcher so far (over its rate or its buffer full).
    pub fn dropped(&self) -> u64 {
        self.watcher.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for TapSubscription {
    fn drop(&mut self) {
        let mut watchers = self.tap.inner.watchers.lock().unwrap();
        watchers.retain(|w| !Arc::ptr_eq(w, &self.watcher));
        self.tap
            .inner
            .count
            .store(watchers.len(), Ordering::Release);
    }
}

impl Tap {
    /// Registers a watcher.
    pub fn subscribe(&self, mut filter: TapFilter) -> TapSubscription {
        filter.rate = filter.rate.clamp(1, MAX_TAP_RATE);
        let (tx, lines) = mpsc::channel(WATCHER_BUFFER);
        let watcher = Arc::new(Watcher {
            filter,
            tx,
            window: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let mut watchers = self.inner.watchers.lock().unwrap();
        watchers.push(watcher.clone());
        self.inner.count.store(watchers.len(), Ordering::Release);
        TapSubscription {
            lines,
            watcher,
            tap: self.clone(),
        }
    }

    /// True when anyone watches any stage: the only cost on the hot path when nobody does.
    #[inline]
    pub fn is_watched(&self) -> bool {
        self.inner.count.load(Ordering::Acquire) > 0
    }

    /// Offers one event at `stage`. Call only when [`Tap::is_watched`]; never blocks on a
    /// watcher (a contended registry means this event is skipped).
    pub fn offer(&self, stage: &str, tenant: &str, json: &[u8]) {
        let Ok(watchers) = self.inner.watchers.try_lock() else {
            return;
        };
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut line: Option<Bytes> = None;
        for w in watchers.iter() {
            let f = &w.filter;
            if f.stage != stage || f.tenant.as_deref().is_some_and(|t| t != tenant) {
                continue;
            }
            if w.window.swap(now_s, Ordering::Relaxed) != now_s {
                w.sent.store(0, Ordering::Relaxed);
            }
            if w.sent.fetch_add(1, Ordering::Relaxed) >= u64::from(f.rate) {
                w.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let line = line
                .get_or_insert_with(|| tap_line(stage, tenant, json))
                .clone();
            if w.tx.try_send(line).is_err() {
                w.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `{"stage": .., "tenant_id": .., "event": <the event>}` and a newline.
fn tap_line(stage: &str, tenant: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 64);
    out.extend_from_slice(b"{\"stage\":");
    serde_json::to_writer(&mut out, stage).expect("writing to a Vec");
    out.extend_from_slice(b",\"tenant_id\":");
    serde_json::to_writer(&mut out, tenant).expect("writing to a Vec");
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(stage: &str, tenant: Option<&str>, rate: u32) -> TapFilter {
        TapFilter {
            stage: stage.into(),
            tenant: tenant.map(str::to_string),
            rate,
        }
    }

    #[test]
    fn unwatched_stages_cost_nothing_and_watchers_get_their_stage_and_tenant() {
        let tap = Tap::default();
        assert!(!tap.is_watched());
        let mut acme = tap.subscribe(filter("enriched", Some("acme"), 100));
        assert!(tap.is_watched());
        tap.offer("enriched", "globex", br#"{"n":1}"#);
        tap.offer("ingest", "acme", br#"{"n":2}"#);
        tap.offer("enriched", "acme", br#"{"n":3}"#);
        let line = acme.lines.try_recv().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["stage"], "enriched");
        assert_eq!(v["tenant_id"], "acme");
        assert_eq!(v["event"]["n"], 3);
        assert!(acme.lines.try_recv().is_err());
        drop(acme);
        assert!(!tap.is_watched());
    }

    #[test]
    fn a_watcher_gets_at_most_its_rate_and_a_full_buffer_drops_instead_of_waiting() {
        let tap = Tap::default();
        let mut slow = tap.subscribe(filter("ingest", None, 5));
        for i in 0..50 {
            tap.offer("ingest", "acme", format!("{{\"n\":{i}}}").as_bytes());
        }
        let mut got = 0;
        while slow.lines.try_recv().is_ok() {
            got += 1;
        }
        // Within one second: 5; across a second boundary at most 10.
        assert!((5..=10).contains(&got), "{got}");
        assert_eq!(slow.dropped(), 50 - got);

        let fast = tap.subscribe(filter("ingest", None, MAX_TAP_RATE));
        for _ in 0..(WATCHER_BUFFER + 100) {
            tap.offer("ingest", "acme", b"{}");
        }
        assert!(fast.dropped() >= 100, "{}", fast.dropped());
    }
}
