//! The validated event and its enriched JSON form.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::layout::Layout;
use crate::timefmt;

/// The `type` of an event (docs/events.md).
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

/// A validated event. `raw` is the event's JSON as it arrived; `fields` locates every input
/// member in it, in input order, so the enriched form copies them byte for byte.
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
    raw: Box<[u8]>,
    fields: Vec<Field>,
    assigned_event_id: bool,
    assigned_time: bool,
}

impl Event {
    /// Parses and validates one event object. `received_at` (RFC 3339) becomes `time` when the
    /// event has none; a UUIDv7 becomes `event_id` when it has none.
    pub fn parse(bytes: &[u8], received_at: &str) -> Result<Event, EventError> {
        let MemberList(members) = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() && e.to_string().starts_with("duplicate key") {
                EventError::whole(e.to_string())
            } else if e.is_data() {
                EventError::whole(format!("an event must be a JSON object ({e})"))
            } else {
                EventError::whole(format!("invalid JSON: {e}"))
            }
        })?;
        let raw = |name: &str| {
            members
                .iter()
                .find(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| *v)
        };
        let typed = Typed::read(&raw)?;
        // Spans into the event's own copy of its bytes: one allocation instead of two per member.
        let offset = |s: &str| {
            // serde_json borrows both from `bytes` (from_slice, borrowed key, &RawValue).
            debug_assert!(bytes.as_ptr_range().contains(&s.as_ptr()) || s.is_empty());
            (s.as_ptr() as usize - bytes.as_ptr() as usize) as u32
        };
        let span = |s: &str| (offset(s), offset(s) + s.len() as u32);
        let fields = members
            .iter()
            .map(|(key, value)| Field {
                key: match key {
                    Cow::Borrowed(k) => Key::Raw(span(k)),
                    Cow::Owned(k) => Key::Decoded(k.as_str().into()),
                },
                value: span(value.get()),
            })
            .collect();
        Ok(typed.into_event(bytes.into(), fields, received_at))
    }
}

/// An input member's key: where it is in the event's bytes when it has no escapes, else its
/// decoded text.
#[derive(Debug, Clone)]
enum Key {
    Raw((u32, u32)),
    Decoded(Box<str>),
}

/// An input member: its key and the span of its value in the event's bytes.
#[derive(Debug, Clone)]
struct Field {
    key: Key,
    value: (u32, u32),
}

/// The fields the gateway reads from an event, validated.
struct Typed {
    event_type: EventType,
    tenant_id: String,
    event_id: Option<String>,
    time: Option<String>,
    endpoint_id: Option<String>,
    device_serial: Option<String>,
    hostname: Option<String>,
    user: Option<String>,
    risk: Option<Risk>,
    decision: Option<Verdict>,
}

impl Typed {
    fn read<'a>(raw: &dyn Fn(&str) -> Option<&'a RawValue>) -> Result<Typed, EventError> {
        let type_str = required_str(raw("type"), "type")?;
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
            timefmt::parse_rfc3339(t).map_err(|why| match why {
                timefmt::TimeError::OutOfRange => {
                    EventError::field("time", format!("{why}: {t:?}"))
                }
                timefmt::TimeError::Format(why) => {
                    EventError::field("time", format!("not an RFC 3339 timestamp ({why}): {t:?}"))
                }
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

        Ok(Typed {
            event_type,
            tenant_id,
            event_id,
            time,
            endpoint_id,
            device_serial,
            hostname,
            user,
            risk,
            decision,
        })
    }

    fn into_event(self, raw: Box<[u8]>, fields: Vec<Field>, received_at: &str) -> Event {
        Event {
            assigned_event_id: self.event_id.is_none(),
            assigned_time: self.time.is_none(),
            event_type: self.event_type,
            tenant_id: self.tenant_id,
            event_id: self
                .event_id
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            time: self.time.unwrap_or_else(|| received_at.to_string()),
            endpoint_id: self.endpoint_id,
            device_serial: self.device_serial,
            hostname: self.hostname,
            user: self.user,
            risk: self.risk,
            decision: self.decision,
            raw,
            fields,
        }
    }
}

impl Event {
    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.raw[start as usize..end as usize]
    }

    fn key_is(&self, key: &Key, name: &str) -> bool {
        match key {
            Key::Raw(span) => self.slice(*span) == name.as_bytes(),
            Key::Decoded(k) => &**k == name,
        }
    }

    /// The raw JSON of an input field, as it arrived.
    pub fn raw_field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| self.key_is(&f.key, name))
            .map(|f| self.slice(f.value))
    }

    /// Writes `{` and the input members of the enriched form (less `context` / `enrichment`),
    /// then `event_id` / `time` if they were assigned, leaving the object open for the
    /// gateway's members; `layout` records where each member went. Returns whether any
    /// member was written.
    pub fn write_members(&self, out: &mut Vec<u8>, layout: &mut Layout) -> bool {
        layout.begin(out.len());
        out.push(b'{');
        let mut first = true;
        for field in &self.fields {
            if GATEWAY_FIELDS
                .iter()
                .any(|name| self.key_is(&field.key, name))
            {
                continue;
            }
            separator(out, &mut first);
            let key_start = out.len() + 1;
            match &field.key {
                // No escapes: the key's text is its JSON form between the quotes.
                Key::Raw(span) => {
                    out.push(b'"');
                    out.extend_from_slice(self.slice(*span));
                    out.push(b'"');
                }
                Key::Decoded(k) => write_json_string(out, k),
            }
            out.push(b':');
            let value_start = out.len();
            out.extend_from_slice(self.slice(field.value));
            layout.push_written(out, key_start, value_start);
        }
        for (assigned, key, value) in [
            (self.assigned_event_id, "event_id", &self.event_id),
            (self.assigned_time, "time", &self.time),
        ] {
            if assigned {
                separator(out, &mut first);
                let key_start = out.len() + 1;
                write_json_string(out, key);
                out.push(b':');
                let value_start = out.len();
                write_json_string(out, value);
                layout.push_written(out, key_start, value_start);
            }
        }
        !first
    }

    /// Writes the enriched form: the input fields byte for byte (less `context` / `enrichment`,
    /// which the gateway owns), then `event_id` / `time` if they were assigned, then the given
    /// extra members (already-serialized JSON values such as `context` and `enrichment`).
    pub fn write_enriched(&self, out: &mut Vec<u8>, extra: &[(&str, &[u8])]) {
        let mut first = !self.write_members(out, &mut Layout::default());
        for (key, value) in extra {
            separator(out, &mut first);
            write_json_string(out, key);
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.push(b'}');
    }
}

fn separator(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
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
    crate::scan::string_value(raw.get().as_bytes())
        .map(|s| Some(s.into_owned()))
        .ok_or_else(|| EventError::field(field, format!("must be a string (got {})", kind_of(raw))))
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

/// A required string member's text, borrowed unless it holds escapes.
fn required_str<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<Cow<'a, str>, EventError> {
    let raw = raw
        .filter(|r| r.get() != "null")
        .ok_or_else(|| EventError::field(field, "is required"))?;
    crate::scan::string_value(raw.get().as_bytes())
        .ok_or_else(|| EventError::field(field, format!("must be a string (got {})", kind_of(raw))))
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
    let s = required_str(raw, field)?;
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
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct and allocation-free into a Vec.
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A JSON object read as its members, borrowed from the input, in order, rejecting duplicate
/// keys (a duplicated `tenant_id` would otherwise let a client smuggle a second tenant past
/// checks). Keys with escapes are decoded (and owned); the others point into the input.
struct MemberList<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// Members up to which a duplicate key is looked for by comparing with each earlier one:
/// cheaper than hashing for the few dozen members of a real event.
const LINEAR_KEY_SEARCH: usize = 32;

/// Finds a repeated key in linear time whatever the number of members: a plain scan for the
/// first [`LINEAR_KEY_SEARCH`] members, then a set of the keys' hashes (a scan of each new key
/// against all earlier ones is quadratic: 40 000 keys cost seconds). The hashes are keyed per
/// request (`RandomState`), so a client cannot craft colliding keys; a hash already seen is
/// confirmed against the keys themselves.
#[derive(Default)]
struct DuplicateKeys {
    hashes: Option<(
        std::collections::hash_map::RandomState,
        std::collections::HashSet<u64>,
    )>,
}

impl DuplicateKeys {
    /// Whether `key` is among the keys of `fields` (the members read so far); remembers it.
    fn is_duplicate<V>(&mut self, fields: &[(Cow<'_, str>, V)], key: &str) -> bool {
        use std::hash::BuildHasher;
        if fields.len() < LINEAR_KEY_SEARCH {
            return fields.iter().any(|(k, _)| k == key);
        }
        let (state, seen) = self.hashes.get_or_insert_with(|| {
            let state = std::collections::hash_map::RandomState::new();
            let seen = fields
                .iter()
                .map(|(k, _)| state.hash_one(k.as_ref()))
                .collect();
            (state, seen)
        });
        !seen.insert(state.hash_one(key)) && fields.iter().any(|(k, _)| k == key)
    }
}

/// A key that borrows from the input when it can (serde's own `Cow` always copies).
struct KeyText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for MemberList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemberList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(24);
                let mut keys = DuplicateKeys::default();
                while let Some(KeyText(key)) = map.next_key()? {
                    if keys.is_duplicate(&fields, &key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    fields.push((key, map.next_value()?));
                }
                Ok(MemberList(fields))
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
    fn escaped_keys_are_written_decoded_and_plain_ones_as_they_came() {
        let e = parse(r#"{"type":"alert","tenant_id":"acme","x\u0041":1,"q\"k":"v","enrich\u006dent":2,"event_id":"a","time":"2026-11-28T10:00:00Z"}"#).unwrap();
        assert_eq!(e.raw_field("xA"), Some(&b"1"[..]));
        assert_eq!(e.raw_field("tenant_id"), Some(&br#""acme""#[..]));
        assert_eq!(
            enriched(&e),
            r#"{"type":"alert","tenant_id":"acme","xA":1,"q\"k":"v","event_id":"a","time":"2026-11-28T10:00:00Z","enrichment":{"status":"unmatched"}}"#
        );
        assert!(
            parse(r#"{"type":"alert","tenant_id":"a","t\u0065nant_id":"b"}"#)
                .unwrap_err()
                .to_string()
                .starts_with("duplicate key `tenant_id`")
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
                r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e","time":"9999-12-31T23:59:59-23:59"}"#,
                "field `time`: out of range: in UTC it falls outside the years 0000-9999",
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
