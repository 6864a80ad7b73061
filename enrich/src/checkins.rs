//! Check-in health: the last check-in seen per (tenant, endpoint).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use time::OffsetDateTime;

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

/// Last check-in per tenant and endpoint, and which endpoints were reported stale.
#[derive(Debug, Default)]
pub struct CheckinTracker {
    last: RwLock<HashMap<String, HashMap<String, OffsetDateTime>>>,
    /// MDM records (tenant, device id) that some check-in matched.
    mdm_seen: RwLock<HashSet<(String, String)>>,
    /// Endpoints an `endpoint_stale` alert was emitted for, until they check in again.
    alerted: std::sync::Mutex<HashSet<(String, String)>>,
    dirty: std::sync::atomic::AtomicBool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    checkins: Vec<SavedCheckin>,
    alerted: Vec<(String, String)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedCheckin {
    tenant_id: String,
    endpoint_id: String,
    last_checkin: String,
}

impl CheckinTracker {
    /// Records a check-in; an older one than already known does not move time back. A
    /// check-in clears the endpoint's stale alert.
    pub fn record(&self, tenant_id: &str, endpoint_id: &str, at: OffsetDateTime) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        {
            let mut alerted = self.alerted.lock().unwrap();
            if !alerted.is_empty() {
                alerted.remove(&(tenant_id.to_string(), endpoint_id.to_string()));
            }
        }
        let mut last = self.last.write().unwrap();
        let seen = last
            .entry(tenant_id.to_string())
            .or_default()
            .entry(endpoint_id.to_string())
            .or_insert(at);
        if at > *seen {
            *seen = at;
        }
    }

    /// Notes that a check-in matched this MDM record.
    pub fn record_mdm(&self, tenant_id: &str, mdm_device_id: &str) {
        let key = (tenant_id.to_string(), mdm_device_id.to_string());
        if !self.mdm_seen.read().unwrap().contains(&key) {
            self.mdm_seen.write().unwrap().insert(key);
        }
    }

    /// How many MDM records some check-in matched.
    pub fn mdm_endpoints_seen(&self) -> usize {
        self.mdm_seen.read().unwrap().len()
    }

    /// The last check-in of an endpoint, if any.
    pub fn last_checkin(&self, tenant_id: &str, endpoint_id: &str) -> Option<OffsetDateTime> {
        self.last
            .read()
            .unwrap()
            .get(tenant_id)
            .and_then(|m| m.get(endpoint_id))
            .copied()
    }

    /// Endpoints stale now that no alert was emitted for yet: (tenant, endpoint, last check-in).
    pub fn newly_stale(
        &self,
        now: OffsetDateTime,
        stale_after: Duration,
    ) -> Vec<(String, String, OffsetDateTime)> {
        let alerted = self.alerted.lock().unwrap();
        let last = self.last.read().unwrap();
        let mut out = Vec::new();
        for (tenant, endpoints) in last.iter() {
            for (endpoint, at) in endpoints {
                if status(Some(*at), now, stale_after) == HealthStatus::Stale
                    && !alerted.contains(&(tenant.clone(), endpoint.clone()))
                {
                    out.push((tenant.clone(), endpoint.clone(), *at));
                }
            }
        }
        out
    }

    /// Notes that the stale alert of an endpoint was emitted.
    pub fn mark_alerted(&self, tenant_id: &str, endpoint_id: &str) {
        self.alerted
            .lock()
            .unwrap()
            .insert((tenant_id.to_string(), endpoint_id.to_string()));
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the state to `path` (atomically) when it changed since the last save.
    pub fn save_if_changed(&self, path: &std::path::Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let saved = Saved {
            checkins: self
                .last
                .read()
                .unwrap()
                .iter()
                .flat_map(|(t, m)| {
                    m.iter().map(move |(e, at)| SavedCheckin {
                        tenant_id: t.clone(),
                        endpoint_id: e.clone(),
                        last_checkin: thoth_event::format_rfc3339_millis(*at),
                    })
                })
                .collect(),
            alerted: self.alerted.lock().unwrap().iter().cloned().collect(),
        };
        let result = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec(&saved).map_err(std::io::Error::other)?,
            )?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Restores the state saved at `path`, if any.
    pub fn restore(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
        let n = saved.checkins.len();
        for c in saved.checkins {
            if let Ok(at) = thoth_event::parse_rfc3339(&c.last_checkin) {
                self.record(&c.tenant_id, &c.endpoint_id, at);
            }
        }
        self.alerted.lock().unwrap().extend(saved.alerted);
        Ok(n)
    }

    /// Counts of endpoints by status, for `/v1/health`.
    pub fn summary(&self, now: OffsetDateTime, stale_after: Duration) -> (u64, u64) {
        let last = self.last.read().unwrap();
        let mut healthy = 0;
        let mut stale = 0;
        for at in last.values().flat_map(|m| m.values()) {
            match status(Some(*at), now, stale_after) {
                HealthStatus::Healthy => healthy += 1,
                _ => stale += 1,
            }
        }
        (healthy, stale)
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
        t.record("a", "old", now - Duration::from_secs(3600));
        t.record("a", "fresh", now);
        let stale = t.newly_stale(now, minute);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].1, "old");
        t.mark_alerted("a", "old");
        assert!(t.newly_stale(now, minute).is_empty(), "once");
        t.save_if_changed(&path).unwrap();

        let restarted = CheckinTracker::default();
        assert_eq!(restarted.restore(&path).unwrap(), 2);
        assert!(
            restarted.newly_stale(now, minute).is_empty(),
            "no re-alert after a restart"
        );
        restarted.record("a", "old", now);
        assert!(restarted.newly_stale(now, minute).is_empty());
        assert_eq!(
            restarted
                .newly_stale(now + Duration::from_secs(3600), minute)
                .len(),
            2,
            "stale again later: alerts again"
        );
    }

    #[test]
    fn later_checkins_win() {
        let t = CheckinTracker::default();
        let now = OffsetDateTime::now_utc();
        t.record("a", "e", now);
        t.record("a", "e", now - Duration::from_secs(3600));
        assert_eq!(t.last_checkin("a", "e"), Some(now));
        assert_eq!(t.last_checkin("b", "e"), None);
        assert_eq!(t.summary(now, Duration::from_secs(60)), (1, 0));
    }
}
