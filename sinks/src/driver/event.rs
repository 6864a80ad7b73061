//! An event on its way through a sink, and how the sink's route turns an enriched record into
//! one.

use bytes::Bytes;
use thoth_wal::record::EnrichedRecord;

use crate::route::{Route, Routed};

/// One event a sink delivers: the enriched event from the WAL and, when the sink has a
/// `remap`, what the remap made of it (what is sent).
#[derive(Debug)]
pub struct Event {
    enriched: EnrichedRecord,
    remapped: Option<EnrichedRecord>,
    /// When it was appended to the WAL (Unix ms); `None` for dead letters handed back.
    pub appended_ms: Option<u64>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the first attempt failed (RFC 3339), kept in its dead letter.
    pub first_failed_at: Option<String>,
}

impl Event {
    /// An event sent as it was enriched.
    pub fn new(enriched: EnrichedRecord, appended_ms: Option<u64>) -> Event {
        Event {
            enriched,
            remapped: None,
            appended_ms,
            attempts: 0,
            first_failed_at: None,
        }
    }

    /// What the destination receives: the remap's output, or the enriched event.
    pub fn sent(&self) -> &EnrichedRecord {
        self.remapped.as_ref().unwrap_or(&self.enriched)
    }

    /// The enriched event (what a dead letter keeps, whatever the remap made of it).
    pub fn enriched(&self) -> &EnrichedRecord {
        &self.enriched
    }
}

/// What a sink's route makes of one record.
#[derive(Debug)]
pub enum Routing {
    /// Not for this sink (another tenant, or its condition is false).
    Skip,
    Send(Event),
    /// Its remap failed: dead-letter it with the reason.
    Failed(Event, String),
}

/// Routes one enriched record through the sink's tenants, condition and remap.
pub fn route(route: &Route, enriched: EnrichedRecord, appended_ms: Option<u64>) -> Routing {
    let remapped = match route.route(&enriched.tenant_id, &enriched.json) {
        Routed::Skip => return Routing::Skip,
        Routed::Send(std::borrow::Cow::Borrowed(_)) => None,
        Routed::Send(std::borrow::Cow::Owned(out)) => Some(Bytes::from(out)),
        Routed::Failed(reason) => {
            return Routing::Failed(Event::new(enriched, appended_ms), reason);
        }
    };
    let mut event = Event::new(enriched, appended_ms);
    event.remapped = remapped.map(|json| event.enriched.with_json(json));
    Routing::Send(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, json: &str) -> EnrichedRecord {
        EnrichedRecord::new(tenant, Bytes::copy_from_slice(json.as_bytes()))
    }

    fn program(src: &str) -> Option<std::sync::Arc<thoth_transform::VrlProgram>> {
        Some(std::sync::Arc::new(
            thoth_transform::VrlProgram::compile("t", src).unwrap().0,
        ))
    }

    #[test]
    fn routes_by_tenant_condition_and_remap() {
        let metrics = thoth_transform::TransformMetrics::new(&prometheus::Registry::new()).unwrap();
        let tenants = ["acme".to_string()];
        let plain = Route::new("s", Some(&tenants), None, None, metrics.clone());
        let json = r#"{"type":"decision","risk":"high"}"#;
        assert!(matches!(
            route(&plain, record("globex", json), None),
            Routing::Skip
        ));
        let Routing::Send(e) = route(&plain, record("acme", json), Some(7)) else {
            panic!("sent")
        };
        assert_eq!(&e.sent().json[..], json.as_bytes());
        assert_eq!(e.appended_ms, Some(7));

        let remap = Route::new("s", None, None, program(".risk = \"low\""), metrics.clone());
        let Routing::Send(e) = route(&remap, record("acme", json), None) else {
            panic!("sent")
        };
        assert!(std::str::from_utf8(&e.sent().json)
            .unwrap()
            .contains("\"low\""));
        assert_eq!(
            &e.enriched().json[..],
            json.as_bytes(),
            "dead letters keep the enriched event"
        );
        assert_eq!(e.sent().tenant_id, "acme");

        let failing = Route::new("s", None, None, program("abort"), metrics.clone());
        let condition = Route::new("s", None, program(".risk == \"low\""), None, metrics);
        assert!(matches!(
            route(&condition, record("acme", json), None),
            Routing::Skip
        ));
        let Routing::Failed(e, reason) = route(&failing, record("acme", json), None) else {
            panic!("a remap that aborts fails")
        };
        assert!(reason.contains("aborted"), "{reason}");
        assert_eq!(&e.enriched().json[..], json.as_bytes());
    }
}
