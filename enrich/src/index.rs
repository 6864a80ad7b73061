//! The endpoint index: immutable, built after each snapshot load and swapped in atomically.
//! Lookups within one tenant by endpoint id, then serial, then hostname (case-insensitive).

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use serde::Serialize;
use thoth_config::FleetRule;

use crate::endpoint_json::MembersWriter;
pub use crate::endpoint_store::IndexedEndpoint;
use crate::endpoint_store::{EndpointStore, EndpointText};
use crate::fleet::assign_fleet;
use crate::record::ProviderSnapshot;

/// How an event was matched to an endpoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedOn {
    EndpointId,
    Serial,
    Hostname,
}

impl MatchedOn {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedOn::EndpointId => "endpoint_id",
            MatchedOn::Serial => "serial",
            MatchedOn::Hostname => "hostname",
        }
    }
}

/// Positions of endpoints by a key each endpoint holds itself, so the table stores 4 bytes
/// per endpoint instead of a copy of the key.
#[derive(Debug, Default)]
struct KeyTable(HashTable<u32>);

impl KeyTable {
    /// Adds `key` at `position` unless an earlier endpoint has it (the first one wins).
    fn insert_first<'e>(
        &mut self,
        hasher: &DefaultHashBuilder,
        key: &str,
        position: u32,
        key_of: impl Fn(u32) -> Option<&'e str>,
    ) {
        let hash = hasher.hash_one(key);
        if self.0.find(hash, |&p| key_of(p) == Some(key)).is_none() {
            self.0.insert_unique(hash, position, |&p| {
                hasher.hash_one(key_of(p).unwrap_or_default())
            });
        }
    }

    fn get<'e>(
        &self,
        hasher: &DefaultHashBuilder,
        key: &str,
        key_of: impl Fn(u32) -> Option<&'e str>,
    ) -> Option<usize> {
        self.0
            .find(hasher.hash_one(key), |&p| key_of(p) == Some(key))
            .map(|&p| p as usize)
    }
}

/// One provider's endpoints (all of one tenant) and their lookup tables.
#[derive(Debug, Default)]
pub struct ProviderIndex {
    tenant_id: String,
    endpoints: EndpointStore,
    hasher: DefaultHashBuilder,
    by_id: KeyTable,
    by_serial: KeyTable,
    by_host: KeyTable,
    summary: Option<ProviderSummary>,
}

/// Per-provider figures for health output.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderSummary {
    pub provider: String,
    pub tenant_id: String,
    pub kind: &'static str,
    pub endpoints: usize,
    pub snapshot: String,
}

/// The immutable index: every provider's part, in the order the config lists them. The MDM
/// loader keeps the parts, not the snapshots' records, so a provider that changes is
/// re-indexed alone and memory holds each endpoint once.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    parts: Vec<Arc<ProviderIndex>>,
    pub providers: Vec<ProviderSummary>,
}

impl ProviderIndex {
    /// Indexes one provider's snapshot with the fleet rules. Within the provider, the first
    /// record with a key wins.
    pub fn build(snap: &ProviderSnapshot, rules: &[FleetRule]) -> ProviderIndex {
        // One JSON per rule, shared by every endpoint the rule matches.
        let fleets: Vec<Arc<str>> = rules
            .iter()
            .map(|rule| {
                serde_json::json!({"id": rule.fleet_id, "name": rule.fleet_name})
                    .to_string()
                    .into()
            })
            .collect();
        let mut endpoints = EndpointStore::new(snap.records.len(), fleets, snap.taken_at.clone());
        let mut members = MembersWriter::default();
        for record in &snap.records {
            let fleet = assign_fleet(rules, &snap.tenant_id, record).map(|rule| {
                rules
                    .iter()
                    .position(|r| std::ptr::eq(r, rule))
                    .expect("the rule is one of `rules`")
            });
            let host_key = record.hostname.as_deref().map(str::to_lowercase);
            let text = EndpointText {
                endpoint_members: members.write(record, snap.kind.as_str()),
                mdm_device_id: &record.mdm_device_id,
                endpoint_id: record.endpoint_id.as_deref(),
                serial: record.serial.as_deref(),
                host_key: host_key.as_deref(),
            };
            if let Err(e) = endpoints.push(text, fleet) {
                tracing::warn!(provider = %snap.provider, device = %record.mdm_device_id.chars().take(64).collect::<String>(), error = %e, "MDM record not indexed");
            }
        }
        endpoints.finish();
        let mut part = ProviderIndex {
            tenant_id: snap.tenant_id.clone(),
            endpoints,
            ..ProviderIndex::default()
        };
        part.index_keys();
        part.summary = Some(ProviderSummary {
            provider: snap.provider.clone(),
            tenant_id: snap.tenant_id.clone(),
            kind: snap.kind.as_str(),
            endpoints: part.endpoints.len(),
            snapshot: snap.taken_at.to_string(),
        });
        part
    }

    /// Number of endpoint records.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Fills the lookup tables from the endpoints; within the provider the first endpoint
    /// with a key wins.
    fn index_keys(&mut self) {
        let endpoints = &self.endpoints;
        for i in 0..endpoints.len() {
            let position = u32::try_from(i).expect("fewer than 2^32 endpoints per provider");
            if let Some(id) = endpoints.endpoint_id(i) {
                self.by_id.insert_first(&self.hasher, id, position, |p| {
                    endpoints.endpoint_id(p as usize)
                });
            }
            if let Some(serial) = endpoints.serial(i) {
                self.by_serial
                    .insert_first(&self.hasher, serial, position, |p| {
                        endpoints.serial(p as usize)
                    });
            }
            if let Some(host) = endpoints.host_key(i) {
                self.by_host
                    .insert_first(&self.hasher, host, position, |p| {
                        endpoints.host_key(p as usize)
                    });
            }
        }
    }

    fn by_id(&self, id: &str) -> Option<usize> {
        self.by_id
            .get(&self.hasher, id, |p| self.endpoints.endpoint_id(p as usize))
    }

    fn by_serial(&self, serial: &str) -> Option<usize> {
        self.by_serial
            .get(&self.hasher, serial, |p| self.endpoints.serial(p as usize))
    }

    fn by_host(&self, h: &str) -> Option<usize> {
        let key_of = |p: u32| self.endpoints.host_key(p as usize);
        if h.bytes().any(|b| b.is_ascii_uppercase()) || !h.is_ascii() {
            self.by_host.get(&self.hasher, &h.to_lowercase(), key_of)
        } else {
            self.by_host.get(&self.hasher, h, key_of)
        }
    }
}

impl EndpointIndex {
    /// Builds the index from every provider's snapshot. When two records of a tenant share a
    /// key, the first provider listed wins.
    pub fn build<'a>(
        snapshots: impl IntoIterator<Item = &'a ProviderSnapshot>,
        rules: &[FleetRule],
    ) -> EndpointIndex {
        EndpointIndex::from_parts(
            snapshots
                .into_iter()
                .map(|snap| Arc::new(ProviderIndex::build(snap, rules)))
                .collect(),
        )
    }

    /// The index of providers already indexed, in the config's order.
    pub fn from_parts(parts: Vec<Arc<ProviderIndex>>) -> EndpointIndex {
        let providers = parts.iter().filter_map(|p| p.summary.clone()).collect();
        EndpointIndex { parts, providers }
    }

    /// Finds the endpoint of an event within its tenant: by endpoint id, then serial, then
    /// hostname (case-insensitive); for each key the first provider listed that has it wins.
    pub fn lookup(
        &self,
        tenant_id: &str,
        endpoint_id: Option<&str>,
        serial: Option<&str>,
        hostname: Option<&str>,
    ) -> Option<(IndexedEndpoint<'_>, MatchedOn)> {
        let first = |find: &dyn Fn(&ProviderIndex) -> Option<usize>| {
            self.parts
                .iter()
                .filter(|p| p.tenant_id == tenant_id)
                .find_map(|p| find(p).map(|i| p.endpoints.get(i)))
        };
        endpoint_id
            .and_then(|id| first(&|p| p.by_id(id)))
            .map(|e| (e, MatchedOn::EndpointId))
            .or_else(|| {
                serial
                    .and_then(|s| first(&|p| p.by_serial(s)))
                    .map(|e| (e, MatchedOn::Serial))
            })
            .or_else(|| {
                hostname
                    .and_then(|h| first(&|p| p.by_host(h)))
                    .map(|e| (e, MatchedOn::Hostname))
            })
    }

    /// Number of endpoint records.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EndpointRecord;
    use thoth_config::MdmKind;

    fn rec(id: &str, ep: Option<&str>, serial: Option<&str>, host: Option<&str>) -> EndpointRecord {
        EndpointRecord {
            mdm_device_id: id.into(),
            endpoint_id: ep.map(Into::into),
            serial: serial.map(Into::into),
            hostname: host.map(Into::into),
            managed: true,
            ..Default::default()
        }
    }

    fn snap(tenant: &str, records: Vec<EndpointRecord>) -> ProviderSnapshot {
        ProviderSnapshot {
            provider: format!("{tenant}-mdm"),
            tenant_id: tenant.into(),
            kind: MdmKind::Jamf,
            taken_at: "2026-11-28T09:55:00Z".into(),
            records,
        }
    }

    #[test]
    fn matching_order_and_tenant_scope() {
        let index = EndpointIndex::build(
            &[
                snap(
                    "acme",
                    vec![
                        rec("1", Some("ep-1"), Some("S1"), Some("Host-One")),
                        rec("2", None, Some("S2"), Some("host-two")),
                        rec("3", None, None, Some("host-three")),
                    ],
                ),
                snap(
                    "globex",
                    vec![rec("9", Some("ep-9"), Some("S9"), Some("host-nine"))],
                ),
            ],
            &[],
        );
        let m = |t, e, s, h| {
            index
                .lookup(t, e, s, h)
                .map(|(ie, on)| (ie.mdm_device_id.to_string(), on))
        };
        // endpoint_id beats serial beats hostname
        assert_eq!(
            m("acme", Some("ep-1"), Some("S2"), None),
            Some(("1".into(), MatchedOn::EndpointId))
        );
        assert_eq!(
            m("acme", Some("ep-x"), Some("S2"), Some("host-one")),
            Some(("2".into(), MatchedOn::Serial))
        );
        assert_eq!(
            m("acme", None, None, Some("HOST-ONE")),
            Some(("1".into(), MatchedOn::Hostname))
        );
        assert_eq!(
            m("acme", None, None, Some("host-three")),
            Some(("3".into(), MatchedOn::Hostname))
        );
        // never across tenants
        assert_eq!(m("acme", Some("ep-9"), Some("S9"), Some("host-nine")), None);
        assert_eq!(m("initech", Some("ep-1"), None, None), None);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn the_first_provider_listed_wins_a_shared_key() {
        let mut second = snap("acme", vec![rec("20", Some("ep-1"), Some("S2"), None)]);
        second.provider = "acme-intune".into();
        let index = EndpointIndex::build(
            &[
                snap("acme", vec![rec("10", Some("ep-1"), None, Some("h"))]),
                second,
            ],
            &[],
        );
        let id = |e, s, h| {
            index
                .lookup("acme", e, s, h)
                .map(|(ie, _)| ie.mdm_device_id.to_string())
        };
        assert_eq!(id(Some("ep-1"), None, None), Some("10".into()));
        // A serial only the second provider knows is still found, after ids found nothing.
        assert_eq!(id(Some("ep-x"), Some("S2"), Some("h")), Some("20".into()));
        assert_eq!(index.providers.len(), 2);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn within_a_provider_the_first_record_with_a_key_wins() {
        let index = EndpointIndex::build(
            &[snap(
                "acme",
                vec![
                    rec("1", Some("ep-1"), Some("S1"), Some("Host")),
                    rec("2", Some("ep-1"), Some("S1"), Some("HOST")),
                    rec("3", Some("ep-3"), Some("S3"), Some("other")),
                ],
            )],
            &[],
        );
        let id = |e, s, h| {
            index
                .lookup("acme", e, s, h)
                .map(|(ie, _)| ie.mdm_device_id.to_string())
        };
        assert_eq!(id(Some("ep-1"), None, None).as_deref(), Some("1"));
        assert_eq!(id(None, Some("S1"), None).as_deref(), Some("1"));
        assert_eq!(id(None, None, Some("host")).as_deref(), Some("1"));
        assert_eq!(id(None, None, Some("OTHER")).as_deref(), Some("3"));
        assert_eq!(id(None, Some("S2"), None), None);
    }

    #[test]
    fn endpoint_json_is_prepared() {
        let index = EndpointIndex::build(
            &[snap("acme", vec![rec("1", None, Some("S1"), Some("h"))])],
            &[],
        );
        let (ie, _) = index.lookup("acme", None, Some("S1"), None).unwrap();
        assert_eq!(
            ie.endpoint_members.to_string(),
            r#""hostname":"h","serial":"S1","mdm":{"provider":"jamf","device_id":"1","managed":true}"#
        );
    }
}
