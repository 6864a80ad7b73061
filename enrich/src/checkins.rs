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

/// Last check-in per tenant and endpoint.
#[derive(Debug, Default)]
pub struct CheckinTracker {
    last: RwLock<HashMap<String, HashMap<String, OffsetDateTime>>>,
    /// MDM records (tenant, device id) that some check-in matched.
    mdm_seen: RwLock<HashSet<(String, String)>>,
}

impl CheckinTracker {
    /// Records a check-in; an older one than already known does not move time back.
    pub fn record(&self, tenant_id: &str, endpoint_id: &str, at: OffsetDateTime) {
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
