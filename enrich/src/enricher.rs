//! Enrichment on the hot path: one lock-free index read per event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use thoth_config::{Config, Tenant};
use thoth_event::{format_rfc3339_millis, Event, EventType, Layout};
use time::OffsetDateTime;

use crate::checkins::{self, CheckinTracker};
use crate::index::{EndpointIndex, IndexedEndpoint, MatchedOn};

#[derive(serde::Serialize)]
struct TenantJson<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    compliance_profile: Option<&'a str>,
}

/// Adds tenant, fleet, endpoint and health context to events.
pub struct Enricher {
    index: ArcSwap<EndpointIndex>,
    /// `context.tenant` JSON per tenant id.
    tenants: ArcSwap<HashMap<String, String>>,
    checkins: CheckinTracker,
    stale_after: Duration,
    loaded: AtomicBool,
    /// `thoth_enrichment_total{status}`, resolved once: matched, unmatched.
    enriched: [IntCounter; 2],
}

impl Enricher {
    /// An enricher with an empty index; metrics go to `registry`.
    pub fn new(config: &Config, registry: &Registry) -> prometheus::Result<Arc<Enricher>> {
        let tenants = tenant_contexts(&config.tenants);
        let enrichment_total = IntCounterVec::new(
            Opts::new(
                "thoth_enrichment_total",
                "Events enriched, by status (matched / unmatched).",
            ),
            &["status"],
        )?;
        registry.register(Box::new(enrichment_total.clone()))?;
        let checkins = CheckinTracker::new(config.checkins.max_unknown_endpoints as usize);
        registry.register(Box::new(checkins.evicted_counter().clone()))?;
        Ok(Arc::new(Enricher {
            index: ArcSwap::from_pointee(EndpointIndex::default()),
            tenants: ArcSwap::from_pointee(tenants),
            checkins,
            stale_after: config.checkins.stale_after,
            loaded: AtomicBool::new(false),
            enriched: [
                enrichment_total.with_label_values(&["matched"]),
                enrichment_total.with_label_values(&["unmatched"]),
            ],
        }))
    }

    /// Replaces the tenants' context (a config reload).
    pub fn set_tenants(&self, tenants: &[Tenant]) {
        self.tenants.store(Arc::new(tenant_contexts(tenants)));
    }

    /// Installs a new index (after a snapshot load); lookups in flight keep the old one.
    pub fn swap_index(&self, index: EndpointIndex) {
        let index = Arc::new(index);
        self.index.store(index.clone());
        self.loaded.store(true, Ordering::Release);
        // Endpoints that checked in before this snapshot knew them are known now.
        self.checkins
            .learn_known(|t, e| index.lookup(t, Some(e), None, None).is_some());
    }

    /// True once the MDM snapshots were loaded (successfully or not) at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The current index.
    pub fn index(&self) -> Guard<Arc<EndpointIndex>> {
        self.index.load()
    }

    pub fn checkins(&self) -> &CheckinTracker {
        &self.checkins
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The context and health held for one endpoint (for `GET /v1/endpoints/...`); `None`
    /// when neither the MDM data nor a check-in knows it.
    pub fn describe(&self, tenant_id: &str, endpoint_id: &str) -> Option<serde_json::Value> {
        let probe = serde_json::json!({
            "type": "alert", "tenant_id": tenant_id, "endpoint_id": endpoint_id,
            "event_id": "lookup", "time": thoth_event::now_rfc3339(),
        });
        let event = Event::parse(probe.to_string().as_bytes(), "").ok()?;
        let mut out = Vec::new();
        let index = self.index.load();
        let found = index.lookup(tenant_id, Some(endpoint_id), None, None);
        self.write_context(
            &event,
            found,
            OffsetDateTime::now_utc(),
            &mut out,
            &mut Layout::default(),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).ok()?;
        let known = v["enrichment"]["status"] == "matched"
            || self.checkins.last_checkin(tenant_id, endpoint_id).is_some();
        known.then(|| {
            serde_json::json!({
                "tenant_id": tenant_id, "endpoint_id": endpoint_id,
                "context": v["context"], "enrichment": v["enrichment"],
            })
        })
    }

    /// The enriched form of `event`, for callers that do not keep where its members are (the
    /// `test` command). The hot path writes into the WAL frame with [`Self::enrich_into`].
    pub fn enrich(&self, event: &Event, now: OffsetDateTime) -> Vec<u8> {
        let mut out = Vec::new();
        self.enrich_into(event, now, &mut out, &mut Layout::default());
        out
    }

    /// Writes the enriched form of `event` into `out`; `layout` records where its members
    /// went. A check-in also updates the endpoint's health, as received at `now` (the
    /// gateway's clock: the event's own `time` is the client's word and stays in the event).
    pub fn enrich_into(
        &self,
        event: &Event,
        now: OffsetDateTime,
        out: &mut Vec<u8>,
        layout: &mut Layout,
    ) {
        let index = self.index.load();
        let found = index.lookup(
            &event.tenant_id,
            event.endpoint_id.as_deref(),
            event.device_serial.as_deref(),
            event.hostname.as_deref(),
        );
        if let (EventType::Checkin, Some(endpoint)) = (event.event_type, &event.endpoint_id) {
            let device = found.map(|(e, _)| e.mdm_device_id);
            self.checkins
                .record_checkin(&event.tenant_id, endpoint, now, device);
        }
        self.write_context(event, found, now, out, layout);
        self.enriched[usize::from(found.is_none())].inc();
    }

    /// Writes the enriched event, with the MDM record `found` for it (if any).
    fn write_context(
        &self,
        event: &Event,
        found: Option<(IndexedEndpoint<'_>, MatchedOn)>,
        now: OffsetDateTime,
        out: &mut Vec<u8>,
        layout: &mut Layout,
    ) {
        // Written straight after the event's own members: no intermediate buffers.
        if event.write_members(out, layout) {
            out.push(b',');
        }
        let context_key = out.len() + 1;
        out.extend_from_slice(b"\"context\":");
        let context_value = out.len();
        out.extend_from_slice(b"{\"tenant\":");
        match self.tenants.load().get(&event.tenant_id) {
            Some(t) => out.extend_from_slice(t.as_bytes()),
            None => {
                // Ingest only accepts listed tenants; keep the id if one slips through.
                out.extend_from_slice(b"{\"id\":");
                serde_json::to_writer(&mut *out, &event.tenant_id).expect("Vec write");
                out.push(b'}');
            }
        }
        let endpoint_id = event
            .endpoint_id
            .as_deref()
            .or_else(|| found.and_then(|(e, _)| e.endpoint_id));
        if let Some((endpoint, _)) = found {
            if let Some(fleet) = &endpoint.fleet_json {
                out.extend_from_slice(b",\"fleet\":");
                out.extend_from_slice(fleet.as_bytes());
            }
            out.extend_from_slice(b",\"endpoint\":{");
            if let Some(id) = endpoint_id {
                out.extend_from_slice(b"\"id\":");
                serde_json::to_writer(&mut *out, id).expect("Vec write");
                out.push(b',');
            }
            endpoint.endpoint_members.write_to(out);
            out.push(b'}');
        }
        if let Some(id) = endpoint_id {
            let last = self.checkins.last_checkin(&event.tenant_id, id);
            let status = checkins::status(last, now, self.stale_after);
            out.extend_from_slice(b",\"health\":{\"status\":\"");
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b'"');
            if let Some(at) = last {
                out.extend_from_slice(b",\"last_checkin\":\"");
                out.extend_from_slice(format_rfc3339_millis(at).as_bytes());
                out.push(b'"');
            }
            out.push(b'}');
        }
        out.push(b'}');
        layout.push_written(out, context_key, context_value);
        let enrichment_key = out.len() + 2;
        out.extend_from_slice(b",\"enrichment\":");
        let enrichment_value = out.len();
        match found {
            Some((endpoint, on)) => {
                out.extend_from_slice(b"{\"status\":\"matched\",\"matched_on\":\"");
                out.extend_from_slice(on.as_str().as_bytes());
                out.extend_from_slice(b"\",\"snapshot\":");
                serde_json::to_writer(&mut *out, endpoint.snapshot).expect("Vec write");
                out.push(b'}');
            }
            None => out.extend_from_slice(b"{\"status\":\"unmatched\"}"),
        }
        layout.push_written(out, enrichment_key, enrichment_value);
        out.push(b'}');
    }
}

/// `context.tenant` JSON per tenant id.
fn tenant_contexts(tenants: &[Tenant]) -> HashMap<String, String> {
    tenants
        .iter()
        .map(|t| {
            let json = serde_json::to_string(&TenantJson {
                id: &t.id,
                name: &t.name,
                compliance_profile: t.compliance_profile.as_deref(),
            })
            .expect("serializing strings cannot fail");
            (t.id.clone(), json)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use thoth_event::scan::object_members;

    #[test]
    fn the_layout_records_every_member_written() {
        let config = Config::from_toml(
            "data_dir = \"/nonexistent\"\n[[api.tokens]]\ntenant_id = \"acme\"\ntoken = \"t0123456789abcdef\"\n[[tenants]]\nid = \"acme\"\nname = \"Acme\"\n\
             [sinks.f]\ntype = \"file\"\npath = \"/nonexistent/out\"\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        let enricher = Enricher::new(&config, &Registry::new()).unwrap();
        let events: [&str; 4] = [
            r#"{"type":"decision","tenant_id":"acme","endpoint_id":"ep","event_id":"e1","time":"2026-11-28T10:00:00Z","risk":"low","decision":"allow","x":{"y":[1]}}"#,
            // assigned id and time, an escaped key, an input context the gateway replaces
            r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep","hostn\u0061me":"h","k\"q":1,"context":{"a":1}}"#,
            r#"{"type":"alert","tenant_id":"acme","endpoint_id":"ep","event_id":"e3","time":"2026-11-28T10:00:00Z","severity":"high"}"#,
            r#"{"type":"alert","tenant_id":"acme","endpoint_id":"ep","event_id":"e4","time":"2026-11-28T10:00:00Z","severity":"high","enrichment":null}"#,
        ];
        let mut layout = Layout::default();
        for source in events {
            let event = Event::parse(source.as_bytes(), "2026-11-28T10:00:00Z").unwrap();
            let mut out = b"record header".to_vec();
            let start = out.len();
            enricher.enrich_into(&event, OffsetDateTime::now_utc(), &mut out, &mut layout);
            let json = &out[start..];
            let recorded: Vec<_> = layout.members(json).collect();
            let scanned: Vec<_> = object_members(json).unwrap().collect();
            assert_eq!(recorded, scanned, "{}", String::from_utf8_lossy(json));
        }
    }
}
