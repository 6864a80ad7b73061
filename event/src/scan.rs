//! The members of JSON the gateway already holds as valid (its enriched events, validated at
//! ingest or written by itself), found by their boundaries alone: no validation, no
//! allocation. Reading a few fields of a 1–2 KB event this way costs a fraction of a parse.
//!
//! On malformed input the scan stops early or yields odd slices; it never panics and never
//! reads out of bounds (the fuzz target and the tests below feed it garbage).

use std::borrow::Cow;

/// A member's key as written, between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawKey<'a> {
    /// The text between the quotes, escapes not decoded.
    pub text: &'a [u8],
    /// Whether `text` holds an escape (`\`).
    pub escaped: bool,
}

impl<'a> RawKey<'a> {
    /// A key from the text between its quotes.
    pub fn new(text: &'a [u8]) -> Self {
        RawKey {
            text,
            escaped: text.contains(&b'\\'),
        }
    }

    /// Whether the key is `name` once decoded.
    pub fn is(&self, name: &str) -> bool {
        if self.escaped {
            self.decoded() == name
        } else {
            self.text == name.as_bytes()
        }
    }

    /// The key's bytes, decoded when it holds escapes (no UTF-8 check otherwise: for
    /// comparing with known names).
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.escaped {
            Cow::Owned(self.decoded().into_owned().into_bytes())
        } else {
            Cow::Borrowed(self.text)
        }
    }

    /// The key's text, decoded when it holds escapes.
    pub fn decoded(&self) -> Cow<'a, str> {
        string_content(self.text).unwrap_or(Cow::Borrowed(""))
    }
}

/// Iterates over `(key, raw value)` of a JSON object, in order.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    json: &'a [u8],
    pos: usize,
}

/// The members of the JSON object `json`; `None` when it does not start with `{`.
pub fn object_members(json: &[u8]) -> Option<Members<'_>> {
    let start = skip_whitespace(json, 0);
    (json.get(start) == Some(&b'{')).then_some(Members {
        json,
        pos: start + 1,
    })
}

impl<'a> Iterator for Members<'a> {
    type Item = (RawKey<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.json;
        let found = member_at(b, self.pos);
        self.pos = b.len(); // stays at the end unless a whole member is found
        let (key, i) = found?;
        let end = value_end(b, i);
        if end <= i {
            return None;
        }
        self.pos = end;
        Some((key, &b[i..end]))
    }
}

/// The key of the member at `pos` (after a `,` or the `{`) and where its value starts.
fn member_at(b: &[u8], pos: usize) -> Option<(RawKey<'_>, usize)> {
    let mut i = skip_whitespace(b, pos);
    if b.get(i) == Some(&b',') {
        i = skip_whitespace(b, i + 1);
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (key_end, escaped) = string_end(b, i)?;
    let key = RawKey {
        text: &b[i + 1..key_end - 1],
        escaped,
    };
    i = skip_whitespace(b, key_end);
    if b.get(i) != Some(&b':') {
        return None;
    }
    Some((key, skip_whitespace(b, i + 1)))
}

/// Iterates over the members of a JSON object with each value left open: `(key, the input from
/// the value's first byte to its end)`. A value's end is found only when the next member is
/// asked for, so a reader that stops at a container member never scans it twice.
#[derive(Debug, Clone)]
pub struct OpenMembers<'a> {
    json: &'a [u8],
    pos: usize,
    /// Where the value last handed out starts, until its end is found.
    open: Option<usize>,
}

/// The members of the JSON object `json`, values left open; `None` when it does not start
/// with `{`.
pub fn open_members(json: &[u8]) -> Option<OpenMembers<'_>> {
    let members = object_members(json)?;
    Some(OpenMembers {
        json,
        pos: members.pos,
        open: None,
    })
}

impl<'a> Iterator for OpenMembers<'a> {
    type Item = (RawKey<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.json;
        if let Some(start) = self.open.take() {
            let end = value_end(b, start);
            if end <= start {
                self.pos = b.len();
                return None;
            }
            self.pos = end;
        }
        let found = member_at(b, self.pos);
        self.pos = b.len();
        let (key, i) = found?;
        if matches!(b.get(i), None | Some(b',' | b'}' | b']')) {
            return None; // no value: the same members `Members` yields
        }
        self.open = Some(i);
        Some((key, &b[i..]))
    }
}

/// A raw JSON string value's text (`"..."`, quotes included), decoded when it holds escapes;
/// `None` when `raw` is not a string.
pub fn string_value(raw: &[u8]) -> Option<Cow<'_, str>> {
    match raw {
        [b'"', content @ .., b'"'] => string_content(content),
        _ => None,
    }
}

fn string_content(content: &[u8]) -> Option<Cow<'_, str>> {
    if !content.contains(&b'\\') {
        return std::str::from_utf8(content).ok().map(Cow::Borrowed);
    }
    // Escapes are rare in the fields read this way; serde_json decodes them correctly.
    let mut quoted = Vec::with_capacity(content.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(content);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .ok()
        .map(Cow::Owned)
}

fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `b[start] == '"'`, and whether it holds an
/// escape.
fn string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    // Most strings of an event are short: a plain loop beats a SIMD search's setup there.
    let short_end = b.len().min(i + 32);
    while i < short_end {
        match b[i] {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    loop {
        let rest = b.get(i..)?;
        let at = i + memchr::memchr2(b'"', b'\\', rest)?;
        if b[at] == b'"' {
            return Some((at + 1, escaped));
        }
        escaped = true;
        i = at + 2; // skip the escaped character
    }
}

/// The raw value starting at `json[offset]`; `None` when there is none there.
pub fn value_at(json: &[u8], offset: usize) -> Option<&[u8]> {
    let end = value_end(json, offset);
    (end > offset).then(|| &json[offset..end])
}

/// The index just past the value starting at `b[i]` (`i` itself when there is none).
fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        None => i,
        Some(b'"') => string_end(b, i).map_or(b.len(), |(end, _)| end),
        Some(b'{' | b'[') => container_end(b, i),
        Some(_) => b[i..]
            .iter()
            .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(b.len(), |n| i + n),
    }
}

fn container_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i = string_end(b, i).map_or(b.len(), |(end, _)| end);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(json: &str) -> Vec<(String, String)> {
        object_members(json.as_bytes())
            .unwrap()
            .map(|(k, v)| {
                (
                    k.decoded().into_owned(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn members_in_order_with_raw_values() {
        let json = r#" { "a" : 1.5e3 , "b\"q":"x\\\"}" ,"c":{"d":[1,{"e":"]"}]},"f":[],"g":null,"h":true}"#;
        assert_eq!(
            pairs(json),
            [
                ("a", "1.5e3"),
                ("b\"q", r#""x\\\"}""#),
                ("c", r#"{"d":[1,{"e":"]"}]}"#),
                ("f", "[]"),
                ("g", "null"),
                ("h", "true"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(pairs("{}").is_empty());
        assert!(object_members(b"[1]").is_none());
    }

    #[test]
    fn the_same_members_serde_json_sees() {
        let json = r#"{"type":"decision","n":-0.5,"s":"\u00e9\n","o":{"k":[{"x":"{"}]},"t":"\\"}"#;
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).unwrap();
        let mut scanned: Vec<(String, serde_json::Value)> = object_members(json.as_bytes())
            .unwrap()
            .map(|(k, v)| (k.decoded().into_owned(), serde_json::from_slice(v).unwrap()))
            .collect();
        scanned.sort_by(|a, b| a.0.cmp(&b.0)); // serde_json's map is sorted
        assert_eq!(scanned, parsed.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn long_strings_and_late_escapes() {
        let long = "x".repeat(40);
        let json = format!(r#"{{"{long}\"q":"{long}\\{long}","b":1}}"#);
        let keys: Vec<RawKey> = object_members(json.as_bytes())
            .unwrap()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].escaped && !keys[1].escaped);
        assert_eq!(keys[0].decoded(), format!("{long}\"q"));
        let values: Vec<&[u8]> = object_members(json.as_bytes())
            .unwrap()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values[0], format!(r#""{long}\\{long}""#).as_bytes());
    }

    #[test]
    fn keys_and_strings_decode_escapes() {
        assert!(RawKey::new(b"tenant_id").is("tenant_id"));
        assert!(RawKey::new(br"tenant\u005fid").is("tenant_id"));
        assert!(!RawKey::new(b"tenant").is("tenant_id"));
        assert_eq!(string_value(br#""abc""#).as_deref(), Some("abc"));
        assert_eq!(string_value(br#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(string_value(b"12"), None);
        assert_eq!(string_value(b"\""), None);
    }

    /// Open members are the closed ones, each value running on to the end of the input.
    fn same_members_open_or_closed(json: &[u8]) {
        let (Some(closed), Some(open)) = (object_members(json), open_members(json)) else {
            assert!(object_members(json).is_none() && open_members(json).is_none());
            return;
        };
        let closed: Vec<_> = closed.collect();
        let open: Vec<_> = open.collect();
        assert_eq!(
            open.len(),
            closed.len(),
            "{:?}",
            String::from_utf8_lossy(json)
        );
        for ((ck, cv), (ok, ov)) in closed.iter().zip(&open) {
            assert_eq!(ck, ok);
            assert_eq!(ov.as_ptr(), cv.as_ptr());
            assert_eq!(
                ov.as_ptr() as usize + ov.len(),
                json.as_ptr() as usize + json.len()
            );
        }
    }

    #[test]
    fn open_members_leave_each_value_running_to_the_end() {
        let json = br#"{"a":1,"b":{"c":[1,"}"]},"d":"x"}"#;
        let open: Vec<(String, &[u8])> = open_members(json)
            .unwrap()
            .map(|(k, v)| (k.decoded().into_owned(), v))
            .collect();
        assert_eq!(
            open,
            [
                ("a".to_string(), &br#"1,"b":{"c":[1,"}"]},"d":"x"}"#[..]),
                ("b".to_string(), &br#"{"c":[1,"}"]},"d":"x"}"#[..]),
                ("d".to_string(), &br#""x"}"#[..]),
            ]
        );
        same_members_open_or_closed(json);
        same_members_open_or_closed(br#" { "a" : 1.5e3 , "g":null,"h":true}"#);
        assert!(open_members(b"[1]").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: [&[u8]; 10] = [
            b"{",
            b"{\"",
            b"{\"a",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":\"\\",
            b"{\"a\":{\"b\":[",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":1,,\"b\":2}",
        ];
        for input in inputs {
            let _ = object_members(input).map(|m| m.count());
            same_members_open_or_closed(input);
        }
        // Every prefix of a real event.
        let json = br#"{"a":"x\\y","b":{"c":[1,"]",{"d":null}]},"e":1}"#;
        for n in 0..json.len() {
            let _ = object_members(&json[..n]).map(|m| m.count());
            same_members_open_or_closed(&json[..n]);
        }
    }
}
