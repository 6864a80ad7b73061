//! Check-in health: the last check-in seen per (tenant, endpoint), by the gateway's receive
//! time (never the time a client wrote in its event: a check-in dated 2999 would keep an
//! endpoint "healthy" forever).
//!
//! Endpoints that some MDM snapshot knows are kept as long as the gateway runs (the snapshot
//! bounds them: an MDM record stands for at most [`MAX_ENDPOINTS_PER_RECORD`] endpoint ids, so
//! check-ins of made-up ids with a real device's serial do not count as known beyond that).
//! Endpoints no snapshot knows are kept in a bounded set
//! (`checkins.max_unknown_endpoints`): past it, the one that checked in longest ago is
//! evicted and counted. Such an endpoint is reported stale only once it was seen twice, so a
//! made-up endpoint id sent once never raises an alert.
//!
//! The state is saved to `data_dir/checkins.json` (version 2, below) so that a restart
//! neither forgets endpoints nor alerts them again; version 1 files are read too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use prometheus::IntCounter;
use time::OffsetDateTime;

/// The most endpoint ids one MDM record (one device) counts as known for; a device reinstalled
/// a few times has a few. Further ids matched to it by serial or hostname count as unknown.
pub const MAX_ENDPOINTS_PER_RECORD: u8 = 4;

/// `context.health.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Stale,
    Never,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Stale => "stale",
            HealthStatus::Never => "never",
        }
    }
}

/// What is held for one endpoint.
#[derive(Debug, Clone, Copy)]
struct Entry {
    last: OffsetDateTime,
    /// Check-ins seen, counted up to 2 (all that matters: once, or more).
    seen: u8,
    /// Whether an MDM snapshot knew the endpoint at its last check-in.
    known: bool,
    /// An `endpoint_stale` alert was emitted; cleared by the next check-in.
    alerted: bool,
    /// For unknown endpoints: the position of its newest entry in the eviction queue.
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    endpoints: HashMap<String, HashMap<String, Entry>>,
    /// Unknown endpoints, least recently checked in first; an item whose generation is not
    /// its entry's any more is stale and skipped.
    unknown_order: VecDeque<(String, String, u64)>,
    unknown: usize,
    next_generation: u64,
}

/// Last check-in per tenant and endpoint, and which endpoints were reported stale.
#[derive(Debug)]
pub struct CheckinTracker {
    state: RwLock<State>,
    /// MDM records (tenant, device id) that some check-in matched, with how many endpoint ids
    /// each vouches for (at most [`MAX_ENDPOINTS_PER_RECORD`]).
    mdm_seen: RwLock<HashMap<(String, String), u8>>,
    max_unknown: usize,
    evicted: IntCounter,
    dirty: AtomicBool,
    /// Check-ins received here, for the shared state (enabled with `backend = "redis"`).
    outbox: crate::checkin_outbox::CheckinOutbox,
}

/// The saved state, version 2.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedV2 {
    version: u32,
    checkins: Vec<SavedCheckin>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCheckin {
    tenant_id: String,
    endpoint_id: String,
    last_checkin: String,
    #[serde(default)]
    seen: u8,
    #[serde(default)]
    known: bool,
    #[serde(default)]
    alerted: bool,
}

/// The saved state, version 1 (no `version` member): check-ins and alerted endpoints.
#[derive(serde::Deserialize)]
struct SavedV1 {
    checkins: Vec<SavedCheckin>,
    alerted: Vec<(String, String)>,
}

impl Default for CheckinTracker {
    fn default() -> Self {
        CheckinTracker::new(100_000)
    }
}

impl CheckinTracker {
    /// A tracker keeping at most `max_unknown` endpoints that no MDM snapshot knows.
    pub fn new(max_unknown: usize) -> Self {
        CheckinTracker {
            state: RwLock::default(),
            mdm_seen: RwLock::default(),
            max_unknown,
            evicted: IntCounter::new(
                "thoth_checkins_unknown_evicted_total",
                "Endpoints no MDM snapshot knows whose check-in state was evicted (checkins.max_unknown_endpoints).",
            )
            .expect("a valid metric"),
            dirty: AtomicBool::new(false),
            outbox: Default::default(),
        }
    }

    /// The check-ins waiting for the shared state.
    pub fn outbox(&self) -> &crate::checkin_outbox::CheckinOutbox {
        &self.outbox
    }

    /// Takes a check-in another replica received, when it is newer than the one held here:
    /// it counts as a check-in (it clears the stale alert); `mdm`: the device id of the MDM
    /// record it matches here. Whether it was newer.
    pub fn merge_fleet(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        at: OffsetDateTime,
        mdm: Option<&str>,
    ) -> bool {
        if self
            .last_checkin(tenant_id, endpoint_id)
            .is_some_and(|last| last >= at)
        {
            return false;
        }
        self.record_seen(tenant_id, endpoint_id, at, mdm);
        true
    }

    /// The eviction counter, to register with a metrics registry.
    pub fn evicted_counter(&self) -> &IntCounter {
        &self.evicted
    }

    /// Records a check-in received at `at` (the gateway's clock); `mdm`: the device id of the
    /// MDM record it matched, if any. Time never moves back, and a check-in clears the stale
    /// alert.
    pub fn record_checkin(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        at: OffsetDateTime,
        mdm: Option<&str>,
    ) {
        self.record_seen(tenant_id, endpoint_id, at, mdm);
        self.outbox.add(tenant_id, endpoint_id, at);
    }

    /// [`CheckinTracker::record_checkin`] without the outbox (also for check-ins merged from
    /// the fleet).
    fn record_seen(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        at: OffsetDateTime,
        mdm: Option<&str>,
    ) {
        let known_already = self
            .state
            .read()
            .unwrap()
            .endpoints
            .get(tenant_id)
            .and_then(|m| m.get(endpoint_id))
            .is_some_and(|e| e.known);
        let known = match mdm {
            None => false,
            Some(_) if known_already => true,
            Some(device) => self.admit(tenant_id, device),
        };
        self.record(tenant_id, endpoint_id, at, known);
    }

    /// One more endpoint id vouched for by an MDM record, if it has room
    /// ([`MAX_ENDPOINTS_PER_RECORD`]).
    fn admit(&self, tenant_id: &str, device: &str) -> bool {
        let key = (tenant_id.to_string(), device.to_string());
        let mut seen = self.mdm_seen.write().unwrap();
        let n = seen.entry(key).or_insert(0);
        if *n >= MAX_ENDPOINTS_PER_RECORD {
            return false;
        }
        *n += 1;
        true
    }

    /// Records a check-in received at `at`; `known` when an MDM snapshot knows the endpoint.
    pub fn record(&self, tenant_id: &str, endpoint_id: &str, at: OffsetDateTime, known: bool) {
        self.dirty.store(true, Ordering::Relaxed);
        let mut state = self.state.write().unwrap();
        let state = &mut *state;
        let generation = state.next_generation;
        state.next_generation += 1;
        let tenant = state.endpoints.entry(tenant_id.to_string()).or_default();
        // Whether the endpoint counted as unknown before this check-in.
        let counted = match tenant.get_mut(endpoint_id) {
            Some(e) => {
                let counted = !e.known;
                e.last = e.last.max(at);
                e.seen = e.seen.saturating_add(1).min(2);
                e.known = known;
                e.alerted = false;
                e.generation = generation;
                counted
            }
            None => {
                tenant.insert(
                    endpoint_id.to_string(),
                    Entry {
                        last: at,
                        seen: 1,
                        known,
                        alerted: false,
                        generation,
                    },
                );
                false
            }
        };
        state.unknown = state.unknown + usize::from(!known) - usize::from(counted);
        if !known {
            state.unknown_order.push_back((
                tenant_id.to_string(),
                endpoint_id.to_string(),
                generation,
            ));
        }
        self.evict(state);
    }

    /// Drops the least recently seen unknown endpoints past the bound, and the queue's stale
    /// items when they outnumber the live ones.
    fn evict(&self, state: &mut State) {
        while state.unknown > self.max_unknown {
            let Some((t, e, generation)) = state.unknown_order.pop_front() else {
                break;
            };
            let Some(endpoints) = state.endpoints.get_mut(&t) else {
                continue;
            };
            if endpoints
                .get(&e)
                .is_some_and(|x| !x.known && x.generation == generation)
            {
                endpoints.remove(&e);
                if endpoints.is_empty() {
                    state.endpoints.remove(&t);
                }
                state.unknown -= 1;
                self.evicted.inc();
            }
        }
        if state.unknown_order.len() > 2 * state.unknown + 1024 {
            let endpoints = &state.endpoints;
            state.unknown_order.retain(|(t, e, generation)| {
                endpoints
                    .get(t)
                    .and_then(|m| m.get(e))
                    .is_some_and(|x| !x.known && x.generation == *generation)
            });
        }
    }

    /// Counts the unknown endpoints that `is_known` now knows (a snapshot loaded after their
    /// check-in) as known: they leave the bounded set and are alerted like any other.
    pub fn learn_known(&self, is_known: impl Fn(&str, &str) -> bool) {
        let mut state = self.state.write().unwrap();
        let mut learned = 0;
        for (tenant, endpoints) in state.endpoints.iter_mut() {
            for (endpoint, e) in endpoints.iter_mut() {
                if !e.known && is_known(tenant, endpoint) {
                    e.known = true;
                    learned += 1;
                }
            }
        }
        state.unknown -= learned;
    }

    /// How many MDM records some check-in matched.
    pub fn mdm_endpoints_seen(&self) -> usize {
        self.mdm_seen.read().unwrap().len()
    }

    /// The last check-in of an endpoint, if any.
    pub fn last_checkin(&self, tenant_id: &str, endpoint_id: &str) -> Option<OffsetDateTime> {
        self.state
            .read()
            .unwrap()
            .endpoints
            .get(tenant_id)
            .and_then(|m| m.get(endpoint_id))
            .map(|e| e.last)
    }

    /// How many endpoints no MDM snapshot knows are held.
    pub fn unknown_endpoints(&self) -> usize {
        self.state.read().unwrap().unknown
    }

    /// Endpoints stale now that no alert was emitted for yet: (tenant, endpoint, last
    /// check-in). An endpoint no snapshot knows counts only once it was seen twice, unless
    /// `is_known` says a snapshot knows it now (one loaded after its check-in).
    pub fn newly_stale(
        &self,
        now: OffsetDateTime,
        stale_after: Duration,
        is_known: impl Fn(&str, &str) -> bool,
    ) -> Vec<(String, String, OffsetDateTime)> {
        let state = self.state.read().unwrap();
        let mut out = Vec::new();
        for (tenant, endpoints) in &state.endpoints {
            for (endpoint, e) in endpoints {
                if !e.alerted
                    && status(Some(e.last), now, stale_after) == HealthStatus::Stale
                    && (e.known || e.seen >= 2 || is_known(tenant, endpoint))
                {
                    out.push((tenant.clone(), endpoint.clone(), e.last));
                }
            }
        }
        out
    }

    /// Notes that the stale alert of an endpoint was emitted.
    pub fn mark_alerted(&self, tenant_id: &str, endpoint_id: &str) {
        let mut state = self.state.write().unwrap();
        if let Some(e) = state
            .endpoints
            .get_mut(tenant_id)
            .and_then(|m| m.get_mut(endpoint_id))
        {
            e.alerted = true;
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the state to `path` (atomically) when it changed since the last save.
    pub fn save_if_changed(&self, path: &std::path::Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let saved = {
            let state = self.state.read().unwrap();
            SavedV2 {
                version: 2,
                checkins: state
                    .endpoints
                    .iter()
                    .flat_map(|(t, m)| {
                        m.iter().map(move |(id, e)| SavedCheckin {
                            tenant_id: t.clone(),
                            endpoint_id: id.clone(),
                            last_checkin: thoth_event::format_rfc3339_millis(e.last),
                            seen: e.seen,
                            known: e.known,
                            alerted: e.alerted,
                        })
                    })
                    .collect(),
            }
        };
        let result = (|| {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension("json.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec(&saved).map_err(std::io::Error::other)?,
            )?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Restores the state saved at `path`, if any; returns how many endpoints it held. A
    /// check-in saved with a time after `now` (only an older build, trusting clients' times,
    /// could save one) is taken as received now. Version 1 entries count as seen once and
    /// known when `is_known` says so.
    pub fn restore(
        &self,
        path: &std::path::Path,
        now: OffsetDateTime,
        is_known: impl Fn(&str, &str) -> bool,
    ) -> std::io::Result<usize> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut checkins = parse_saved(&bytes, &is_known).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        // Oldest first, so the eviction order is the order they checked in.
        checkins.sort_by_key(|(_, _, e)| e.last);
        let n = checkins.len();
        for (tenant, endpoint, mut e) in checkins {
            e.last = e.last.min(now);
            self.record(&tenant, &endpoint, e.last, e.known);
            let mut state = self.state.write().unwrap();
            if let Some(x) = state
                .endpoints
                .get_mut(&tenant)
                .and_then(|m| m.get_mut(&endpoint))
            {
                x.seen = e.seen.clamp(1, 2);
                x.alerted = e.alerted;
            }
        }
        Ok(n)
    }

    /// Counts of endpoints by status, for `/v1/health`.
    pub fn summary(&self, now: OffsetDateTime, stale_after: Duration) -> (u64, u64) {
        let state = self.state.read().unwrap();
        let mut healthy = 0;
        let mut stale = 0;
        for e in state.endpoints.values().flat_map(|m| m.values()) {
            match status(Some(e.last), now, stale_after) {
                HealthStatus::Healthy => healthy += 1,
                _ => stale += 1,
            }
        }
        (healthy, stale)
    }
}

/// The entries of a saved state file, version 1 or 2.
fn parse_saved(
    bytes: &[u8],
    is_known: &impl Fn(&str, &str) -> bool,
) -> Result<Vec<(String, String, Entry)>, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let entry = |c: SavedCheckin, alerted: bool, v1: bool| {
        let last = thoth_event::parse_rfc3339(&c.last_checkin).ok()?;
        let known = if v1 {
            is_known(&c.tenant_id, &c.endpoint_id)
        } else {
            c.known
        };
        let e = Entry {
            last,
            seen: if v1 { 1 } else { c.seen },
            known,
            alerted: alerted || c.alerted,
            generation: 0,
        };
        Some((c.tenant_id, c.endpoint_id, e))
    };
    match v.get("version").and_then(|v| v.as_u64()) {
        None => {
            let saved: SavedV1 = serde_json::from_value(v).map_err(|e| e.to_string())?;
            let alerted: HashSet<(String, String)> = saved.alerted.into_iter().collect();
            Ok(saved
                .checkins
                .into_iter()
                .filter_map(|c| {
                    let a = alerted.contains(&(c.tenant_id.clone(), c.endpoint_id.clone()));
                    entry(c, a, true)
                })
                .collect())
        }
        Some(2) => {
            let saved: SavedV2 = serde_json::from_value(v).map_err(|e| e.to_string())?;
            Ok(saved
                .checkins
                .into_iter()
                .filter_map(|c| entry(c, false, false))
                .collect())
        }
        Some(other) => Err(format!(
            "check-in state version {other} is newer than this build reads"
        )),
    }
}

/// The status of an endpoint whose last check-in was `last`.
pub fn status(
    last: Option<OffsetDateTime>,
    now: OffsetDateTime,
    stale_after: Duration,
) -> HealthStatus {
    match last {
        None => HealthStatus::Never,
        Some(at) if now - at > stale_after => HealthStatus::Stale,
        Some(_) => HealthStatus::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    fn known(_: &str, _: &str) -> bool {
        true
    }

    #[test]
    fn status_by_age() {
        let now = OffsetDateTime::now_utc();
        let fifteen = Duration::from_secs(900);
        assert_eq!(status(None, now, fifteen), HealthStatus::Never);
        assert_eq!(
            status(Some(now - Duration::from_secs(60)), now, fifteen),
            HealthStatus::Healthy
        );
        assert_eq!(
            status(Some(now - Duration::from_secs(901)), now, fifteen),
            HealthStatus::Stale
        );
    }

    #[test]
    fn stale_alerts_once_until_the_next_checkin_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkins.json");
        let t = CheckinTracker::default();
        let now = OffsetDateTime::now_utc();
        let minute = Duration::from_secs(60);
        t.record("a", "old", now - Duration::from_secs(3600), true);
        t.record("a", "fresh", now, true);
        let stale = t.newly_stale(now, minute, known);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].1, "old");
        t.mark_alerted("a", "old");
        assert!(t.newly_stale(now, minute, known).is_empty(), "once");
        t.save_if_changed(&path).unwrap();

        let restarted = CheckinTracker::default();
        assert_eq!(restarted.restore(&path, now, known).unwrap(), 2);
        assert!(
            restarted.newly_stale(now, minute, known).is_empty(),
            "no re-alert after a restart"
        );
        restarted.record("a", "old", now, true);
        assert!(restarted.newly_stale(now, minute, known).is_empty());
        assert_eq!(
            restarted
                .newly_stale(now + Duration::from_secs(3600), minute, known)
                .len(),
            2,
            "stale again later: alerts again"
        );
    }

    #[test]
    fn later_checkins_win() {
        let t = CheckinTracker::default();
        let now = OffsetDateTime::now_utc();
        t.record("a", "e", now, true);
        t.record("a", "e", now - Duration::from_secs(3600), true);
        assert_eq!(t.last_checkin("a", "e"), Some(now));
        assert_eq!(t.last_checkin("b", "e"), None);
        assert_eq!(t.summary(now, Duration::from_secs(60)), (1, 0));
    }

    #[test]
    fn unknown_endpoints_are_bounded_oldest_evicted_and_alerted_only_when_seen_twice() {
        let t = CheckinTracker::new(3);
        let t0 = OffsetDateTime::now_utc() - Duration::from_secs(7200);
        let s = |n: u64| t0 + Duration::from_secs(n);
        t.record("a", "u1", s(0), false);
        t.record("a", "u2", s(1), false);
        t.record("a", "u3", s(2), false);
        t.record("a", "u1", s(3), false); // u1 is now the most recent
        t.record("a", "k", s(4), true); // known endpoints do not count
        t.record("a", "u4", s(5), false); // evicts u2, the least recently seen
        assert_eq!(t.unknown_endpoints(), 3);
        assert_eq!(t.evicted.get(), 1);
        assert_eq!(t.last_checkin("a", "u2"), None);
        assert!(t.last_checkin("a", "u1").is_some());
        assert!(t.last_checkin("a", "k").is_some());
        // All stale now; only the known one and u1 (seen twice) are alerted.
        let mut stale: Vec<String> = t
            .newly_stale(
                OffsetDateTime::now_utc(),
                Duration::from_secs(60),
                |_, _| false,
            )
            .into_iter()
            .map(|(_, e, _)| e)
            .collect();
        stale.sort();
        assert_eq!(stale, ["k", "u1"]);
        // An unknown endpoint that becomes known leaves the bounded set.
        t.record("a", "u3", s(6), true);
        assert_eq!(t.unknown_endpoints(), 2);
        // So does one a snapshot loaded later knows.
        t.learn_known(|_, e| e == "u1");
        assert_eq!(t.unknown_endpoints(), 1);
        t.record("a", "u5", s(7), false);
        t.record("a", "u6", s(8), false);
        t.record("a", "u7", s(9), false); // evicts u4, not u1
        assert!(t.last_checkin("a", "u1").is_some());
        assert_eq!(t.last_checkin("a", "u4"), None);
        // Many repeated check-ins keep the queue bounded too.
        for i in 0..10_000 {
            t.record("a", "u7", s(10 + i), false);
        }
        assert!(t.state.read().unwrap().unknown_order.len() <= 2 * 3 + 1024 + 1);
    }

    #[test]
    fn one_device_vouches_for_a_few_endpoint_ids_only() {
        let t = CheckinTracker::new(3);
        let now = OffsetDateTime::now_utc();
        // Made-up endpoint ids sent with a real device's serial (matched to its record).
        for i in 0..20 {
            t.record_checkin("a", &format!("made-up-{i}"), now, Some("412"));
        }
        // Four are vouched for; the rest are unknown, bounded to 3.
        assert_eq!(t.mdm_endpoints_seen(), 1);
        assert_eq!(t.unknown_endpoints(), 3);
        let held = t.state.read().unwrap().endpoints["a"].len();
        assert_eq!(held, MAX_ENDPOINTS_PER_RECORD as usize + 3);
        // A vouched-for endpoint stays known at its next check-in.
        t.record_checkin("a", "made-up-0", now, Some("412"));
        assert_eq!(t.unknown_endpoints(), 3);
        assert!(t.last_checkin("a", "made-up-0").is_some());
    }

    #[test]
    fn reads_the_released_state_formats_and_heals_future_times() {
        let now = thoth_event::parse_rfc3339("2026-12-02T12:00:00Z").unwrap();
        // Version 1, as earlier builds wrote it (with a check-in a client dated 2999).
        let t = CheckinTracker::default();
        let n = t
            .restore(
                std::path::Path::new(&format!("{FIXTURES}/checkins-v1.json")),
                now,
                |_, e| e != "made-up",
            )
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            t.last_checkin("acme", "ep-2999"),
            Some(now),
            "clamped to now"
        );
        let later = now + Duration::from_secs(86_400);
        let stale: Vec<String> = t
            .newly_stale(later, Duration::from_secs(900), |_, _| false)
            .into_iter()
            .map(|(_, e, _)| e)
            .collect();
        // ep-alerted was alerted already; made-up is unknown and was seen once.
        assert_eq!(stale, ["ep-2999"]);
        // Version 2.
        let t = CheckinTracker::default();
        let path = format!("{FIXTURES}/checkins-v2.json");
        assert_eq!(
            t.restore(std::path::Path::new(&path), now, known).unwrap(),
            2
        );
        let stale: Vec<String> = t
            .newly_stale(later, Duration::from_secs(900), |_, _| false)
            .into_iter()
            .map(|(_, e, _)| e)
            .collect();
        assert_eq!(stale, ["twice"], "the unknown endpoint seen twice");
        // A version from the future is refused with a reason, not misread.
        let dir = tempfile::tempdir().unwrap();
        let future = dir.path().join("c.json");
        std::fs::write(&future, r#"{"version":9,"checkins":[]}"#).unwrap();
        let e = t.restore(&future, now, known).unwrap_err().to_string();
        assert!(e.contains("version 9 is newer"), "{e}");
    }
}
