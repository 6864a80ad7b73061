//! A borrowed view of the fields of an enriched event that sinks map to their own formats
//! (HEC `fields`, Sentinel columns, ECS), read without building a whole JSON tree.

use std::borrow::Cow;

use serde::Deserialize;

/// Commonly mapped fields of an enriched event. Strings borrow from the event where they
/// need no unescaping.
#[derive(Debug, Default, Deserialize)]
pub struct EnrichedView<'a> {
    #[serde(rename = "type", borrow)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub endpoint_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub hostname: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub risk: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub context: Option<ContextView<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ContextView<'a> {
    #[serde(borrow)]
    pub fleet: Option<IdName<'a>>,
    #[serde(borrow)]
    pub tenant: Option<IdName<'a>>,
    #[serde(borrow)]
    pub endpoint: Option<EndpointView<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IdName<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EndpointView<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub hostname: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub os_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub owner: Option<Cow<'a, str>>,
}

impl<'a> EnrichedView<'a> {
    /// Reads the view from an enriched event's JSON.
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// The host name: the event's own, else the MDM's.
    pub fn host(&self) -> Option<&str> {
        self.hostname.as_deref().or_else(|| {
            self.context
                .as_ref()
                .and_then(|c| c.endpoint.as_ref())
                .and_then(|e| e.hostname.as_deref())
        })
    }

    pub fn fleet_id(&self) -> Option<&str> {
        self.context
            .as_ref()
            .and_then(|c| c.fleet.as_ref())
            .and_then(|f| f.id.as_deref())
    }

    /// The endpoint id: the event's own, else the MDM's.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint_id.as_deref().or_else(|| {
            self.context
                .as_ref()
                .and_then(|c| c.endpoint.as_ref())
                .and_then(|e| e.id.as_deref())
        })
    }

    /// `time` as Unix seconds with milliseconds (`1795860000.120`), when it parses.
    pub fn epoch_seconds_ms(&self) -> Option<String> {
        let t = crate::parse_rfc3339(self.time.as_deref()?).ok()?;
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        Some(format!(
            "{}.{:03}",
            ms.div_euclid(1000),
            ms.rem_euclid(1000)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mapped_fields() {
        let json = br#"{"type":"decision","time":"2026-11-28T10:00:00.12Z","tenant_id":"acme","risk":"high",
            "x":{"deep":[1,2]},"context":{"tenant":{"id":"acme","name":"A"},"fleet":{"id":"eng","name":"E"},
            "endpoint":{"id":"ep-1","hostname":"mbp\"q","mdm":{"provider":"jamf"}}}}"#;
        let v = EnrichedView::parse(json).unwrap();
        assert_eq!(v.event_type.as_deref(), Some("decision"));
        assert_eq!(v.host(), Some("mbp\"q"));
        assert_eq!(v.fleet_id(), Some("eng"));
        assert_eq!(v.endpoint(), Some("ep-1"));
        assert_eq!(v.epoch_seconds_ms().as_deref(), Some("1795860000.120"));
    }
}
