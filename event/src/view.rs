//! A borrowed view of the fields of an enriched event that sinks map to their own formats
//! (HEC `fields`, Sentinel columns, ECS), read without building a whole JSON tree.

use std::borrow::Cow;

use crate::scan::{object_members, string_value, RawKey};

/// Commonly mapped fields of an enriched event. Strings borrow from the event where they
/// need no unescaping.
#[derive(Debug, Default)]
pub struct EnrichedView<'a> {
    pub event_type: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub time: Option<Cow<'a, str>>,
    pub tenant_id: Option<Cow<'a, str>>,
    pub endpoint_id: Option<Cow<'a, str>>,
    pub hostname: Option<Cow<'a, str>>,
    pub user: Option<Cow<'a, str>>,
    pub risk: Option<Cow<'a, str>>,
    pub decision: Option<Cow<'a, str>>,
    pub context: Option<ContextView<'a>>,
}

/// Why an enriched event's view could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("the event is not a JSON object")]
    NotAnObject,
    #[error("field `{0}` must be a string")]
    NotAString(String),
    #[error("field `{0}` must be an object")]
    NotAnObjectField(String),
}

fn optional_string<'a>(raw: &'a [u8], key: &RawKey<'_>) -> Result<Option<Cow<'a, str>>, ViewError> {
    if raw == b"null" {
        return Ok(None);
    }
    string_value(raw)
        .map(Some)
        .ok_or_else(|| ViewError::NotAString(key.decoded().into_owned()))
}

fn optional_object<'a, T>(
    raw: &'a [u8],
    name: &str,
    parse: impl FnOnce(&'a [u8]) -> Result<T, ViewError>,
) -> Result<Option<T>, ViewError> {
    if raw == b"null" {
        return Ok(None);
    }
    if !raw.starts_with(b"{") {
        return Err(ViewError::NotAnObjectField(name.to_string()));
    }
    parse(raw).map(Some)
}

#[derive(Debug, Default)]
pub struct ContextView<'a> {
    pub fleet: Option<IdName<'a>>,
    pub tenant: Option<IdName<'a>>,
    pub endpoint: Option<EndpointView<'a>>,
}

#[derive(Debug, Default)]
pub struct IdName<'a> {
    pub id: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default)]
pub struct EndpointView<'a> {
    pub id: Option<Cow<'a, str>>,
    pub hostname: Option<Cow<'a, str>>,
    pub os: Option<Cow<'a, str>>,
    pub os_version: Option<Cow<'a, str>>,
    pub owner: Option<Cow<'a, str>>,
}

impl<'a> ContextView<'a> {
    fn parse(json: &'a [u8]) -> Result<Self, ViewError> {
        let mut view = ContextView::default();
        for (key, raw) in object_members(json).ok_or(ViewError::NotAnObject)? {
            match key.bytes().as_ref() {
                b"fleet" => view.fleet = optional_object(raw, "context.fleet", IdName::parse)?,
                b"tenant" => view.tenant = optional_object(raw, "context.tenant", IdName::parse)?,
                b"endpoint" => {
                    view.endpoint = optional_object(raw, "context.endpoint", EndpointView::parse)?
                }
                _ => {}
            }
        }
        Ok(view)
    }
}

impl<'a> IdName<'a> {
    fn parse(json: &'a [u8]) -> Result<Self, ViewError> {
        let mut view = IdName::default();
        read_strings(
            json,
            &mut [(b"id", &mut view.id), (b"name", &mut view.name)],
        )?;
        Ok(view)
    }
}

impl<'a> EndpointView<'a> {
    fn parse(json: &'a [u8]) -> Result<Self, ViewError> {
        let mut view = EndpointView::default();
        read_strings(
            json,
            &mut [
                (b"id", &mut view.id),
                (b"hostname", &mut view.hostname),
                (b"os", &mut view.os),
                (b"os_version", &mut view.os_version),
                (b"owner", &mut view.owner),
            ],
        )?;
        Ok(view)
    }
}

/// A string field's name and where its value goes.
type StringSlot<'s, 'a> = (&'static [u8], &'s mut Option<Cow<'a, str>>);

/// Fills each slot from the member of the object `json` with its name.
fn read_strings<'a>(json: &'a [u8], slots: &mut [StringSlot<'_, 'a>]) -> Result<(), ViewError> {
    for (key, raw) in object_members(json).ok_or(ViewError::NotAnObject)? {
        let name = key.bytes();
        if let Some((_, slot)) = slots.iter_mut().find(|(n, _)| *n == name.as_ref()) {
            **slot = optional_string(raw, &key)?;
        }
    }
    Ok(())
}

impl<'a> EnrichedView<'a> {
    /// Reads the view from an enriched event's JSON (valid JSON the gateway wrote; see
    /// [`crate::scan`]). A mapped field that is neither a string nor null is an error.
    pub fn parse(json: &'a [u8]) -> Result<Self, ViewError> {
        let members = object_members(json).ok_or(ViewError::NotAnObject)?;
        let mut view = EnrichedView::default();
        for (key, raw) in members {
            let slot = match key.bytes().as_ref() {
                b"type" => &mut view.event_type,
                b"event_id" => &mut view.event_id,
                b"time" => &mut view.time,
                b"tenant_id" => &mut view.tenant_id,
                b"endpoint_id" => &mut view.endpoint_id,
                b"hostname" => &mut view.hostname,
                b"user" => &mut view.user,
                b"risk" => &mut view.risk,
                b"decision" => &mut view.decision,
                b"context" => {
                    view.context = optional_object(raw, "context", ContextView::parse)?;
                    continue;
                }
                _ => continue,
            };
            *slot = optional_string(raw, &key)?;
        }
        Ok(view)
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

    #[test]
    fn escaped_keys_match_and_wrong_types_are_errors() {
        let v =
            EnrichedView::parse(br#"{"hostn\u0061me":"h","risk":null,"context":null}"#).unwrap();
        assert_eq!(v.host(), Some("h"));
        assert_eq!(v.risk, None);
        assert_eq!(
            EnrichedView::parse(br#"{"risk":4}"#).unwrap_err(),
            ViewError::NotAString("risk".into())
        );
        assert_eq!(
            EnrichedView::parse(br#"{"context":{"fleet":"eng"}}"#).unwrap_err(),
            ViewError::NotAnObjectField("context.fleet".into())
        );
        assert_eq!(
            EnrichedView::parse(b"[1]").unwrap_err(),
            ViewError::NotAnObject
        );
    }
}
