//! Request bodies to events: NDJSON, a JSON array, or one JSON object, with explicit limits.
//! A batch is all-or-nothing: any invalid event makes the whole batch invalid.

use serde_json::value::RawValue;

use crate::depth::{max_nesting_depth, shape};
use crate::model::{Event, EventError};

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One event per line (`application/x-ndjson`).
    Ndjson,
    /// A JSON array of events, or one event object (`application/json`).
    Json,
}

/// Limits applied to every event of a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single event, in bytes of its JSON.
    pub max_event_bytes: usize,
    /// Deepest nesting of objects/arrays inside one event.
    pub max_depth: usize,
    /// Most events in one request.
    pub max_events: usize,
    /// Most members of any one object inside an event (`api.max_members`).
    pub max_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_depth: 32,
            max_events: 10_000,
            max_members: 10_000,
        }
    }
}

/// One invalid event of a batch: its 0-based position and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedError {
    pub index: usize,
    pub message: String,
}

/// Most per-event errors reported for one request; the rest are summarized.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Some events are invalid (at most [`MAX_REPORTED_ERRORS`] listed; `total` counts all).
    #[error("{total} invalid event(s)")]
    Invalid {
        errors: Vec<IndexedError>,
        total: usize,
    },
    /// The body as a whole cannot be read as events.
    #[error("{0}")]
    Body(String),
    /// More events than `max_events`.
    #[error("the request holds more than {limit} events; split it into smaller batches")]
    TooManyEvents { limit: usize },
}

/// Decodes and validates a whole request body.
pub fn decode_batch(
    body: &[u8],
    format: BodyFormat,
    limits: &Limits,
    received_at: &str,
) -> Result<Vec<Event>, BatchError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut total_errors = 0usize;
    let mut push = |index: usize, result: Result<Event, EventError>| match result {
        Ok(e) => events.push(e),
        Err(e) => {
            total_errors += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(IndexedError {
                    index,
                    message: e.to_string(),
                });
            }
        }
    };

    match format {
        BodyFormat::Ndjson => {
            let mut count = 0usize;
            for (index, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                count += 1;
                if count > limits.max_events {
                    return Err(BatchError::TooManyEvents {
                        limit: limits.max_events,
                    });
                }
                push(index, parse_one(line, limits, received_at));
            }
        }
        BodyFormat::Json => {
            let start = body.iter().position(|b| !b.is_ascii_whitespace());
            match start.map(|i| body[i]) {
                Some(b'[') => {
                    // The array adds one level of nesting around its events.
                    if max_nesting_depth(body, limits.max_depth + 1) > limits.max_depth + 1 {
                        return Err(BatchError::Body(format!(
                            "JSON nested deeper than {} levels",
                            limits.max_depth
                        )));
                    }
                    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                        BatchError::Body(format!("the body is not a valid JSON array: {e}"))
                    })?;
                    if items.len() > limits.max_events {
                        return Err(BatchError::TooManyEvents {
                            limit: limits.max_events,
                        });
                    }
                    for (index, item) in items.into_iter().enumerate() {
                        push(index, parse_one(item.get().as_bytes(), limits, received_at));
                    }
                }
                Some(b'{') => push(0, parse_one(body, limits, received_at)),
                Some(_) => {
                    return Err(BatchError::Body(
                        "an application/json body must be a JSON object or an array of objects"
                            .into(),
                    ))
                }
                None => {}
            }
        }
    }
    if total_errors > 0 {
        return Err(BatchError::Invalid {
            errors,
            total: total_errors,
        });
    }
    if events.is_empty() {
        return Err(BatchError::Body("the body holds no events".into()));
    }
    Ok(events)
}

fn parse_one(bytes: &[u8], limits: &Limits, received_at: &str) -> Result<Event, EventError> {
    if bytes.len() > limits.max_event_bytes {
        return Err(EventError {
            field: None,
            message: format!(
                "event is {} bytes, over the limit of {} bytes",
                bytes.len(),
                limits.max_event_bytes
            ),
        });
    }
    let shape = shape(bytes, limits.max_depth, limits.max_members);
    if shape.depth > limits.max_depth {
        return Err(EventError {
            field: None,
            message: format!("JSON nested deeper than {} levels", limits.max_depth),
        });
    }
    if shape.most_members > limits.max_members {
        return Err(EventError {
            field: None,
            message: format!(
                "an object in the event has more than {} members (api.max_members)",
                limits.max_members
            ),
        });
    }
    if let Some(number) = shape.number_out_of_range {
        return Err(EventError {
            field: None,
            message: format!(
                "number {number} is out of range: numbers must fit a 64-bit float (send larger values as strings)"
            ),
        });
    }
    Event::parse(bytes, received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-28T10:00:00.000Z";
    const OK: &str = r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e"}"#;

    fn ndjson(body: &str) -> Result<Vec<Event>, BatchError> {
        decode_batch(body.as_bytes(), BodyFormat::Ndjson, &Limits::default(), NOW)
    }

    #[test]
    fn ndjson_counts_blank_lines_in_indexes() {
        let body = format!("{OK}\n\n{OK}\r\n{{bad\n{OK}\n");
        match ndjson(&body) {
            Err(BatchError::Invalid { errors, total }) => {
                assert_eq!(total, 1);
                assert_eq!(errors[0].index, 3);
                assert!(errors[0].message.starts_with("invalid JSON"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ndjson(&format!("{OK}\n\n{OK}\n")).unwrap().len(), 2);
    }

    #[test]
    fn json_array_and_single_object() {
        let limits = Limits::default();
        let arr = format!("[{OK},{OK},{OK}]");
        assert_eq!(
            decode_batch(arr.as_bytes(), BodyFormat::Json, &limits, NOW)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            decode_batch(OK.as_bytes(), BodyFormat::Json, &limits, NOW)
                .unwrap()
                .len(),
            1
        );
        let bad = format!(r#"[{OK},{{"type":"x","tenant_id":"a"}}]"#);
        let Err(BatchError::Invalid { errors, .. }) =
            decode_batch(bad.as_bytes(), BodyFormat::Json, &limits, NOW)
        else {
            panic!()
        };
        assert_eq!(errors[0].index, 1);
        assert!(matches!(
            decode_batch(b"[1,", BodyFormat::Json, &limits, NOW),
            Err(BatchError::Body(_))
        ));
        assert!(matches!(
            decode_batch(b"42", BodyFormat::Json, &limits, NOW),
            Err(BatchError::Body(_))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_event_bytes: 80,
            max_depth: 3,
            max_events: 2,
            max_members: 4,
        };
        let big = format!(
            r#"{{"type":"checkin","tenant_id":"a","endpoint_id":"e","pad":"{}"}}"#,
            "x".repeat(100)
        );
        let deep = r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e","d":[[[1]]]}"#;
        let body = format!("{big}\n{deep}");
        let Err(BatchError::Invalid { errors, .. }) =
            decode_batch(body.as_bytes(), BodyFormat::Ndjson, &limits, NOW)
        else {
            panic!()
        };
        assert!(errors[0].message.contains("over the limit of 80 bytes"));
        assert!(errors[1].message.contains("nested deeper than 3"));
        let three = format!("{OK}\n{OK}\n{OK}");
        assert_eq!(
            decode_batch(three.as_bytes(), BodyFormat::Ndjson, &limits, NOW).unwrap_err(),
            BatchError::TooManyEvents { limit: 2 }
        );
        let wide = r#"{"type":"checkin","x":{"a":1,"b":2,"c":3,"d":4,"e":5}}"#;
        let Err(BatchError::Invalid { errors, .. }) =
            decode_batch(wide.as_bytes(), BodyFormat::Ndjson, &limits, NOW)
        else {
            panic!()
        };
        assert!(
            errors[0]
                .message
                .contains("more than 4 members (api.max_members)"),
            "{errors:?}"
        );
    }

    #[test]
    fn many_keys_are_checked_for_duplicates_in_linear_time() {
        // 100 000 distinct keys, then one repeated: found, with the work of one pass.
        let limits = Limits {
            max_event_bytes: 4 << 20,
            max_members: 200_000,
            ..Limits::default()
        };
        let mut event = String::from(r#"{"type":"checkin","tenant_id":"a","endpoint_id":"e""#);
        for i in 0..100_000 {
            event.push_str(&format!(r#","k{i}":0"#));
        }
        let distinct = format!("{event}}}");
        assert_eq!(
            decode_batch(distinct.as_bytes(), BodyFormat::Json, &limits, NOW)
                .unwrap()
                .len(),
            1
        );
        let repeated = format!(r#"{event},"k77777":1}}"#);
        let Err(BatchError::Invalid { errors, .. }) =
            decode_batch(repeated.as_bytes(), BodyFormat::Json, &limits, NOW)
        else {
            panic!("the repeated key was not found")
        };
        assert!(errors[0].message.starts_with("duplicate key `k77777`"));
        // Escaped and plain spellings of one key are the same key, past the linear search too.
        let escaped = format!(r#"{event},"k\u0031":1}}"#);
        assert!(decode_batch(escaped.as_bytes(), BodyFormat::Json, &limits, NOW).is_err());
    }

    #[test]
    fn empty_body_is_an_error() {
        assert!(matches!(ndjson("\n\n"), Err(BatchError::Body(_))));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let body = b"{\"type\":\"checkin\",\"tenant_id\":\"a\xff\",\"endpoint_id\":\"e\"}";
        assert!(matches!(
            decode_batch(body, BodyFormat::Ndjson, &Limits::default(), NOW),
            Err(BatchError::Invalid { .. })
        ));
    }
}
