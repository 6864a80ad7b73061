//! The validated event and its enriched JSON form.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::timefmt;

/// The `type` of an event (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Decision,
    Checkin,
    Alert,
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Decision,
        EventType::Checkin,
        EventType::Alert,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Decision => "decision",
            EventType::Checkin => "checkin",
            EventType::Alert => "alert",
            EventType::WebhookTest => "webhook_test",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// `risk` of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// `decision` of a decision event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    StepUp,
    Block,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::StepUp, Verdict::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::StepUp => "step_up",
            Verdict::Block => "block",
        }
    }
}

/// Why one event is invalid: the field (when one is to blame) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct EventError {
    pub field: Option<String>,
    pub message: String,
}

impl EventError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        EventError {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        EventError {
            field: None,
            message: message.into(),
        }
    }
}

/// Longest accepted `event_id`, `tenant_id` and endpoint identifiers, in bytes.
const MAX_ID_BYTES: usize = 256;

/// Fields the gateway owns in the enriched form; an input's own copies are replaced.
const GATEWAY_FIELDS: [&str; 2] = ["context", "enrichment"];

/// A validated event. `fields` holds every input field, in input order, as its original bytes.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: EventType,
    pub tenant_id: String,
    pub event_id: String,
    pub time: String,
    pub endpoint_id: Option<String>,
    pub device_serial: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub risk: Option<Risk>,
    pub decision: Option<Verdict>,
    fields: Vec<(String, Box<RawValue>)>,
    assigned_event_id: bool,
    assigned_time: bool,
}

impl Event {
    /// Parses and validates one event object. `received_at` (RFC 3339) becomes `time` when the
    /// event has none; a UUIDv7 becomes `event_id` when it has none.
    pub fn parse(bytes: &[u8], received_at: &str) -> Result<Event, EventError> {
        let RawObject(fields) = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() && e.to_string().starts_with("duplicate key") {
                EventError::whole(e.to_string())
            } else if e.is_data() {
                EventError::whole(format!("an event must be a JSON object ({e})"))
            } else {
                EventError::whole(format!("invalid JSON: {e}"))
            }
        })?;
        Self::from_fields(fields, received_at)
    }

    fn from_fields(
        fields: Vec<(String, Box<RawValue>)>,
        received_at: &str,
    ) -> Result<Event, EventError> {
        let raw = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| &**v);

        let type_str = required_string(raw("type"), "type")?;
        let event_type = EventType::parse(&type_str).ok_or_else(|| {
            EventError::field(
                "type",
                format!(
                    "unknown type {type_str:?}; expected one of decision, checkin, alert, webhook_test"
                ),
            )
        })?;
        let tenant_id = required_id(raw("tenant_id"), "tenant_id")?;
        let event_id = optional_id(raw("event_id"), "event_id")?;
        let time = optional_string(raw("time"), "time")?;
        if let Some(t) = &time {
            timefmt::parse_rfc3339(t).map_err(|why| {
                EventError::field("time", format!("not an RFC 3339 timestamp ({why}): {t:?}"))
            })?;
        }
        let endpoint_id = optional_id(raw("endpoint_id"), "endpoint_id")?;
        let device_serial = optional_id(raw("device_serial"), "device_serial")?;
        let hostname = optional_id(raw("hostname"), "hostname")?;
        let user = optional_string(raw("user"), "user")?;

        let mut risk = None;
        let mut decision = None;
        match event_type {
            EventType::Decision => {
                require_present(&endpoint_id, "endpoint_id", event_type)?;
                risk = Some(required_enum(raw("risk"), "risk", &Risk::ALL, |r| {
                    r.as_str()
                })?);
                decision = Some(required_enum(
                    raw("decision"),
                    "decision",
                    &Verdict::ALL,
                    |v| v.as_str(),
                )?);
            }
            EventType::Checkin => {
                require_present(&endpoint_id, "endpoint_id", event_type)?;
                if let Some(status) = optional_string(raw("status"), "status")? {
                    if status != "healthy" && status != "degraded" {
                        return Err(EventError::field(
                            "status",
                            format!("must be one of healthy, degraded (got {status:?})"),
                        ));
                    }
                }
            }
            EventType::Alert | EventType::WebhookTest => {
                // Risk is optional on alerts; when given it must still be a known level.
                if raw("risk").is_some() {
                    risk = Some(required_enum(raw("risk"), "risk", &Risk::ALL, |r| {
                        r.as_str()
                    })?);
                }
            }
        }

        let assigned_event_id = event_id.is_none();
        let assigned_time = time.is_none();
        Ok(Event {
            event_type,
            tenant_id,
            event_id: event_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            time: time.unwrap_or_else(|| received_at.to_string()),
            endpoint_id,
            device_serial,
            hostname,
            user,
            risk,
            decision,
            fields,
            assigned_event_id,
            assigned_time,
        })
    }

    /// The raw JSON of an input field, as it arrived.
    pub fn raw_field(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// Writes the enriched form: the input fields byte for byte (less `context` / `enrichment`,
    /// which the gateway owns), then `event_id` / `time` if they were assigned, then the given
    /// extra members (already-serialized JSON values such as `context` and `enrichment`).
    pub fn write_enriched(&self, out: &mut Vec<u8>, extra: &[(&str, &[u8])]) {
        out.push(b'{');
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_json_string(out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        for (key, value) in &self.fields {
            if GATEWAY_FIELDS.contains(&key.as_str()) {
                continue;
            }
            member(out, key, value.get().as_bytes());
        }
        if self.assigned_event_id {
            let mut v = Vec::with_capacity(40);
            write_json_string(&mut v, &self.event_id);
            member(out, "event_id", &v);
        }
        if self.assigned_time {
            let mut v = Vec::with_capacity(32);
            write_json_string(&mut v, &self.time);
            member(out, "time", &v);
        }
        for (key, value) in extra {
            member(out, key, value);
        }
        out.push(b'}');
    }
}

fn require_present(v: &Option<String>, field: &str, t: EventType) -> Result<(), EventError> {
    if v.is_none() {
        return Err(EventError::field(
            field,
            format!("required for type {}", t.as_str()),
        ));
    }
    Ok(())
}

fn optional_string(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, EventError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str::<String>(raw.get())
        .map(Some)
        .map_err(|_| EventError::field(field, format!("must be a string (got {})", kind_of(raw))))
}

fn optional_id(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, EventError> {
    let value = optional_string(raw, field)?;
    if let Some(v) = &value {
        if v.is_empty() {
            return Err(EventError::field(field, "must not be empty"));
        }
        if v.len() > MAX_ID_BYTES {
            return Err(EventError::field(
                field,
                format!("longer than {MAX_ID_BYTES} bytes ({} bytes)", v.len()),
            ));
        }
    }
    Ok(value)
}

fn required_string(raw: Option<&RawValue>, field: &str) -> Result<String, EventError> {
    optional_string(raw, field)?.ok_or_else(|| EventError::field(field, "is required"))
}

fn required_id(raw: Option<&RawValue>, field: &str) -> Result<String, EventError> {
    optional_id(raw, field)?.ok_or_else(|| EventError::field(field, "is required"))
}

fn required_enum<T: Copy>(
    raw: Option<&RawValue>,
    field: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, EventError> {
    let s = required_string(raw, field)?;
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        EventError::field(
            field,
            format!("must be one of {} (got {s:?})", names.join(", ")),
        )
    })
}

fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct and allocation-free into a Vec.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A JSON object read as its members' raw bytes, in order, rejecting duplicate keys (a
/// duplicated `tenant_id` would otherwise let a client smuggle a second tenant past checks).
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(key) = map.next_key::<String>()? {
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value: Box<RawValue> = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-28T10:00:00.000Z";

    fn parse(s: &str) -> Result<Event, EventError> {
        Event::parse(s.as_bytes(), NOW)
    }

    fn enriched(e: &Event) -> String {
        let mut out = Vec::new();
        e.write_enriched(&mut out, &[("enrichment", br#"{"status":"unmatched"}"#)]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decision_with_all_fields_is_valid() {
        let e = parse(r#"{"type":"decision","event_id":"e1","time":"2026-11-28T10:00:00.120Z","tenant_id":"acme","endpoint_id":"ep-1","risk":"high","decision":"block"}"#).unwrap();
        assert_eq!(e.event_type, EventType::Decision);
        assert_eq!(e.risk, Some(Risk::High));
        assert_eq!(e.decision, Some(Verdict::Block));
        assert_eq!(e.event_id, "e1");
    }

    #[test]
    fn missing_id_and_time_are_assigned_and_written() {
        let e = parse(r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep-1"}"#).unwrap();
        assert_eq!(e.time, NOW);
        let id = uuid::Uuid::parse_str(&e.event_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let out: serde_json::Value = serde_json::from_str(&enriched(&e)).unwrap();
        assert_eq!(out["event_id"], e.event_id.as_str());
        assert_eq!(out["time"], NOW);
    }

    #[test]
    fn unknown_fields_are_kept_byte_for_byte() {
        let input = r#"{"type":"alert","tenant_id":"acme","x":1.50e3,"nested":{"b":[1, 2 ,3]},"event_id":"a","time":"2026-11-28T10:00:00Z"}"#;
        let e = parse(input).unwrap();
        let out = enriched(&e);
        assert_eq!(
            out,
            r#"{"type":"alert","tenant_id":"acme","x":1.50e3,"nested":{"b":[1, 2 ,3]},"event_id":"a","time":"2026-11-28T10:00:00Z","enrichment":{"status":"unmatched"}}"#
        );
    }

    #[test]
    fn input_context_is_replaced_by_the_gateways() {
        let e = parse(r#"{"type":"alert","tenant_id":"acme","event_id":"a","time":"2026-11-28T10:00:00Z","enrichment":"fake"}"#).unwrap();
        assert_eq!(enriched(&e).matches("enrichment").count(), 1);
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let cases = [
            (r#"{"tenant_id":"acme"}"#, "field `type`: is required"),
            (
                r#"{"type":"nope","tenant_id":"a"}"#,
                "field `type`: unknown type \"nope\"",
            ),
            (
                r#"{"type":"decision","endpoint_id":"e"}"#,
                "field `tenant_id`: is required",
            ),
            (
                r#"{"type":"decision","tenant_id":"a","risk":"low","decision":"allow"}"#,
                "field `endpoint_id`: required for type decision",
            ),
            (
                r#"{"type":"decision","tenant_id":"a","endpoint_id":"e","risk":"severe","decision":"allow"}"#,
                "field `risk`: must be one of low, medium, high, critical (got \"severe\")",
            ),
            (
                r#"{"type":"decision","tenant_id":"a","endpoint_id":"e","risk":"low","decision":"deny"}"#,
                "field `decision`: must be one of allow, step_up, block",
            ),
            (
                r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e","status":"sick"}"#,
                "field `status`: must be one of healthy, degraded",
            ),
            (
                r#"{"type":"checkin","tenant_id":5,"endpoint_id":"e"}"#,
                "field `tenant_id`: must be a string (got a number)",
            ),
            (
                r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e","time":"yesterday"}"#,
                "field `time`: not an RFC 3339 timestamp",
            ),
            (
                r#"{"type":"checkin","tenant_id":"a","tenant_id":"b","endpoint_id":"e"}"#,
                "duplicate key `tenant_id`",
            ),
            (
                r#"{"type":"checkin","tenant_id":"","endpoint_id":"e"}"#,
                "field `tenant_id`: must not be empty",
            ),
            (r#"[1,2]"#, "an event must be a JSON object"),
            (r#"{"type":"checkin""#, "invalid JSON"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.starts_with(want), "{input}: got {err:?}, want {want:?}");
        }
    }
}
