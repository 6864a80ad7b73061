//! A borrowed view of the fields of an enriched event that sinks map to their own formats
//! (HEC `fields`, Sentinel columns, ECS), read without building a whole JSON tree.

use std::borrow::Cow;

use crate::layout::FieldIndex;
use crate::scan::{object_members, open_members, string_value};

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

/// A string or null member; `name` names it in the error.
fn optional_string<'a>(
    raw: &'a [u8],
    name: impl FnOnce() -> String,
) -> Result<Option<Cow<'a, str>>, ViewError> {
    if raw == b"null" {
        return Ok(None);
    }
    string_value(raw)
        .map(Some)
        .ok_or_else(|| ViewError::NotAString(name()))
}

fn optional_object<'a, T>(
    raw: &'a [u8],
    name: &str,
    parse: impl FnOnce(&'a [u8]) -> Result<T, ViewError>,
) -> Result<Option<T>, ViewError> {
    // `raw` may run on past the value (an open member, a value found through the index):
    // an object's reader stops at its closing brace, and `null` is read by its prefix.
    if raw.starts_with(b"null") {
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
        // Keys are unique in what the gateway writes: stop once all three are read, without
        // scanning the members after them (`health`), nor to the end of the last one
        // (`endpoint`, with its `mdm`): the values are left open.
        let mut seen = 0;
        for (key, raw) in open_members(json).ok_or(ViewError::NotAnObject)? {
            match key.bytes().as_ref() {
                b"fleet" => view.fleet = optional_object(raw, "context.fleet", IdName::parse)?,
                b"tenant" => view.tenant = optional_object(raw, "context.tenant", IdName::parse)?,
                b"endpoint" => {
                    view.endpoint = optional_object(raw, "context.endpoint", EndpointView::parse)?
                }
                _ => continue,
            }
            seen += 1;
            if seen == 3 {
                break;
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

/// Fills each slot from the member of the object `json` with its name, stopping once every
/// slot is filled (keys are unique in what the gateway writes).
fn read_strings<'a>(json: &'a [u8], slots: &mut [StringSlot<'_, 'a>]) -> Result<(), ViewError> {
    let mut filled = 0;
    for (key, raw) in object_members(json).ok_or(ViewError::NotAnObject)? {
        let name = key.bytes();
        if let Some((_, slot)) = slots.iter_mut().find(|(n, _)| *n == name.as_ref()) {
            **slot = optional_string(raw, || key.decoded().into_owned())?;
            filled += 1;
            if filled == slots.len() {
                break;
            }
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
            view.set(&key.bytes(), raw, || key.decoded().into_owned())?;
        }
        Ok(view)
    }

    /// Reads the view with the event's field index (from its WAL record) when it has one:
    /// the fields are read where the index says, without scanning the event. An index that
    /// does not fit the JSON is ignored.
    pub fn read(json: &'a [u8], fields: Option<&FieldIndex>) -> Result<Self, ViewError> {
        match fields.and_then(|index| Self::from_index(json, index)) {
            Some(view) => view,
            None => Self::parse(json),
        }
    }

    fn from_index(json: &'a [u8], index: &FieldIndex) -> Option<Result<Self, ViewError>> {
        if json.first() != Some(&b'{') {
            return Some(Err(ViewError::NotAnObject));
        }
        let mut view = EnrichedView::default();
        for (slot, name) in FieldIndex::FIELDS.iter().enumerate() {
            if let Some(raw) = index.value(json, slot).ok()? {
                if let Err(e) = view.set(name.as_bytes(), raw, || name.to_string()) {
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(view))
    }

    /// Takes the member `name` (decoded) when it is one of the view's.
    fn set(
        &mut self,
        name: &[u8],
        raw: &'a [u8],
        display: impl FnOnce() -> String,
    ) -> Result<(), ViewError> {
        let slot = match name {
            b"type" => &mut self.event_type,
            b"event_id" => &mut self.event_id,
            b"time" => &mut self.time,
            b"tenant_id" => &mut self.tenant_id,
            b"endpoint_id" => &mut self.endpoint_id,
            b"hostname" => &mut self.hostname,
            b"user" => &mut self.user,
            b"risk" => &mut self.risk,
            b"decision" => &mut self.decision,
            b"context" => {
                self.context = optional_object(raw, "context", ContextView::parse)?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        *slot = optional_string(raw, display)?;
        Ok(())
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

    /// Appends `time` as Unix seconds with milliseconds (`1795860000.120`) to `out`; `false`
    /// (nothing written) when it does not parse. Written in place: no `String` per event.
    pub fn write_epoch_seconds_ms(&self, out: &mut Vec<u8>) -> bool {
        let Some(t) = self
            .time
            .as_deref()
            .and_then(|t| crate::parse_rfc3339(t).ok())
        else {
            return false;
        };
        crate::write_epoch_ms(out, t.unix_timestamp_nanos().div_euclid(1_000_000));
        true
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
        let mut out = b"t=".to_vec();
        assert!(v.write_epoch_seconds_ms(&mut out));
        assert_eq!(out, b"t=1795860000.120");
        let before_1970 = EnrichedView::parse(br#"{"time":"1969-12-31T23:59:59.999Z"}"#).unwrap();
        out.clear();
        assert!(before_1970.write_epoch_seconds_ms(&mut out));
        assert_eq!(out, b"-0.001");
        let unparsable = EnrichedView::parse(br#"{"time":"yesterday"}"#).unwrap();
        out.clear();
        assert!(!unparsable.write_epoch_seconds_ms(&mut out) && out.is_empty());
    }

    #[test]
    fn escaped_keys_match_and_wrong_types_are_errors() {
        let v =
            EnrichedView::parse(br#"{"hostn\u0061me":"h","risk":null,"context":null}"#).unwrap();
        assert_eq!(v.host(), Some("h"));
        assert_eq!(v.risk, None);
        // Null members of `context`, before and after others.
        let v = EnrichedView::parse(
            br#"{"context":{"endpoint":null,"fleet":{"id":"f"},"tenant":null},"risk":"low"}"#,
        )
        .unwrap();
        let context = v.context.as_ref().unwrap();
        assert!(context.endpoint.is_none() && context.tenant.is_none());
        assert_eq!((v.fleet_id(), v.risk.as_deref()), (Some("f"), Some("low")));
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

    #[test]
    fn the_field_index_reads_what_a_scan_reads() {
        let events: [&[u8]; 7] = [
            br#"{"type":"decision","x":{"risk":"no"},"time":"2026-11-28T10:00:00Z","hostn\u0061me":"h\"q","user":null,
                "context":{"fleet":{"id":"eng"},"endpoint":{"id":"ep","owner":"o"}},"risk":"low","decision":"allow"}"#,
            br#"{"tenant_id":"acme","endpoint_id":"ep-1","event_id":"e"}"#,
            br#"{"risk":4}"#,
            br#"{"context":{"tenant":"flat"}}"#,
            // Through the index `context` runs on to the end of the event: null is still null.
            br#"{"context":null,"risk":"high"}"#,
            br#"{"context":{"tenant":{"id":"t"},"endpoint":{"hostname":"h","mdm":{"x":"}"}},"fleet":null},"risk":"low"}"#,
            br#"{"context":{"endpoint":null,"fleet":{"id":"f","name":"}"},"tenant":{"id":"t"}},"risk":"low"}"#,
        ];
        for json in events {
            let index = crate::layout::layout_by_scan(json)
                .field_index(json)
                .unwrap();
            assert_eq!(
                format!("{:?}", EnrichedView::read(json, Some(&index))),
                format!("{:?}", EnrichedView::parse(json)),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        // An index made for other JSON is ignored: the event is scanned.
        let other = br#"{"risk":"high"}"#;
        let index = crate::layout::layout_by_scan(events[0])
            .field_index(events[0])
            .unwrap();
        assert_eq!(
            EnrichedView::read(other, Some(&index))
                .unwrap()
                .risk
                .as_deref(),
            Some("high")
        );
    }
}
