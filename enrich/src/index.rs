//! The endpoint index: immutable, built after each snapshot load and swapped in atomically.
//! Lookups within one tenant by endpoint id, then serial, then hostname (case-insensitive).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use thoth_config::FleetRule;

use crate::fleet::assign_fleet;
use crate::record::{EndpointRecord, ProviderSnapshot};

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

/// A record with its enrichment JSON prepared once, at index build time.
#[derive(Debug)]
pub struct IndexedEndpoint {
    /// The MDM's id of the device.
    pub mdm_device_id: String,
    /// The Thoth endpoint id the MDM carries, if any.
    pub endpoint_id: Option<String>,
    /// `"fleet":{...}` member, or empty when no rule matched.
    pub fleet_json: Option<String>,
    /// The members of `context.endpoint` after `id` (hostname, serial, …, mdm), no braces.
    pub endpoint_members: String,
    pub snapshot: Arc<str>,
}

#[derive(Debug, Default)]
struct TenantEndpoints {
    endpoints: Vec<IndexedEndpoint>,
    by_id: HashMap<String, usize>,
    by_serial: HashMap<String, usize>,
    by_host: HashMap<String, usize>,
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

/// The immutable index.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    tenants: HashMap<String, TenantEndpoints>,
    pub providers: Vec<ProviderSummary>,
}

#[derive(Serialize)]
struct MdmJson<'a> {
    provider: &'a str,
    device_id: &'a str,
    managed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    compliant: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sync: Option<&'a str>,
}

#[derive(Serialize)]
struct EndpointJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    mdm: MdmJson<'a>,
}

fn endpoint_members(r: &EndpointRecord, kind: &str) -> String {
    let json = serde_json::to_string(&EndpointJson {
        hostname: r.hostname.as_deref(),
        serial: r.serial.as_deref(),
        os: r.os.as_deref(),
        os_version: r.os_version.as_deref(),
        owner: r.owner.as_deref(),
        department: r.department.as_deref(),
        site: r.site.as_deref(),
        category: r.category.as_deref(),
        model: r.model.as_deref(),
        mdm: MdmJson {
            provider: kind,
            device_id: &r.mdm_device_id,
            managed: r.managed,
            compliant: r.compliant,
            last_sync: r.last_sync.as_deref(),
        },
    })
    .expect("serializing strings cannot fail");
    // Strip the braces: `id` is written first at enrichment time.
    json[1..json.len() - 1].to_string()
}

impl EndpointIndex {
    /// Builds the index from every provider's snapshot. When two records of a tenant share a
    /// key, the first provider listed wins.
    /// Takes the snapshots by reference: cloning 100 000 records only to index them doubled
    /// the memory peak of every load.
    pub fn build<'a>(
        snapshots: impl IntoIterator<Item = &'a ProviderSnapshot>,
        rules: &[FleetRule],
    ) -> EndpointIndex {
        let mut index = EndpointIndex::default();
        for snap in snapshots {
            let tenant = index.tenants.entry(snap.tenant_id.clone()).or_default();
            for record in &snap.records {
                let fleet_json = assign_fleet(rules, &snap.tenant_id, record).map(|rule| {
                    serde_json::json!({"id": rule.fleet_id, "name": rule.fleet_name}).to_string()
                });
                let i = tenant.endpoints.len();
                if let Some(id) = &record.endpoint_id {
                    tenant.by_id.entry(id.clone()).or_insert(i);
                }
                if let Some(serial) = &record.serial {
                    tenant.by_serial.entry(serial.clone()).or_insert(i);
                }
                if let Some(host) = &record.hostname {
                    tenant.by_host.entry(host.to_lowercase()).or_insert(i);
                }
                tenant.endpoints.push(IndexedEndpoint {
                    endpoint_members: endpoint_members(record, snap.kind.as_str()),
                    fleet_json,
                    mdm_device_id: record.mdm_device_id.clone(),
                    endpoint_id: record.endpoint_id.clone(),
                    snapshot: snap.taken_at.clone(),
                });
            }
            index.providers.push(ProviderSummary {
                provider: snap.provider.clone(),
                tenant_id: snap.tenant_id.clone(),
                kind: snap.kind.as_str(),
                endpoints: snap.records.len(),
                snapshot: snap.taken_at.to_string(),
            });
        }
        index
    }

    /// Finds the endpoint of an event within its tenant: by endpoint id, then serial, then
    /// hostname (case-insensitive).
    pub fn lookup(
        &self,
        tenant_id: &str,
        endpoint_id: Option<&str>,
        serial: Option<&str>,
        hostname: Option<&str>,
    ) -> Option<(&IndexedEndpoint, MatchedOn)> {
        let t = self.tenants.get(tenant_id)?;
        let found = endpoint_id
            .and_then(|id| t.by_id.get(id))
            .map(|&i| (i, MatchedOn::EndpointId))
            .or_else(|| {
                serial
                    .and_then(|s| t.by_serial.get(s))
                    .map(|&i| (i, MatchedOn::Serial))
            })
            .or_else(|| {
                hostname.and_then(|h| {
                    let found = if h.bytes().any(|b| b.is_ascii_uppercase()) || !h.is_ascii() {
                        t.by_host.get(&h.to_lowercase())
                    } else {
                        t.by_host.get(h)
                    };
                    found.map(|&i| (i, MatchedOn::Hostname))
                })
            })?;
        Some((&t.endpoints[found.0], found.1))
    }

    /// Number of endpoint records.
    pub fn len(&self) -> usize {
        self.tenants.values().map(|t| t.endpoints.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                .map(|(ie, on)| (ie.mdm_device_id.clone(), on))
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
    fn endpoint_json_is_prepared() {
        let index = EndpointIndex::build(
            &[snap("acme", vec![rec("1", None, Some("S1"), Some("h"))])],
            &[],
        );
        let (ie, _) = index.lookup("acme", None, Some("S1"), None).unwrap();
        assert_eq!(
            ie.endpoint_members,
            r#""hostname":"h","serial":"S1","mdm":{"provider":"jamf","device_id":"1","managed":true}"#
        );
    }
}
