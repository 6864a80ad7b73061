//! JSON nesting depth, members per object and number range, measured in one pass without
//! parsing, so that a hostile body is refused before the parser recurses into it or spends
//! time on a million keys.

/// What one pass over a JSON text found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of `{`/`[` outside strings; `limit + 1` when the pass stopped there.
    pub depth: usize,
    /// The most members any one object has; `member_limit + 1` when the pass stopped there.
    pub most_members: usize,
    /// The first number too large for a 64-bit float (its first 40 characters).
    pub number_out_of_range: Option<String>,
}

/// Measures `bytes`, stopping as soon as the nesting exceeds `limit` or an object has more
/// than `member_limit` members. Members are counted by their `:` (one per member, outside
/// strings); what is not valid JSON is the parser's to refuse.
pub fn shape(bytes: &[u8], limit: usize, member_limit: usize) -> Shape {
    // One counter per open `{` / `[`: members so far, `None` for arrays.
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut max = 0usize;
    let mut most_members = 0usize;
    let mut number_out_of_range = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_end(bytes, i + 1);
                continue;
            }
            b'{' | b'[' => {
                open.push((b == b'{').then_some(0));
                if open.len() > max {
                    max = open.len();
                    if max > limit {
                        break;
                    }
                }
            }
            b'}' | b']' => {
                open.pop();
            }
            b':' => {
                if let Some(Some(members)) = open.last_mut() {
                    *members += 1;
                    if *members > most_members {
                        most_members = *members;
                        if most_members > member_limit {
                            break;
                        }
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while matches!(
                    bytes.get(i),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    i += 1;
                }
                if number_out_of_range.is_none() {
                    number_out_of_range = out_of_range(&bytes[start..i]);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Shape {
        depth: max,
        most_members,
        number_out_of_range,
    }
}

/// How many events a request body holds, counted without parsing so that a rate limit can be
/// applied before any decoding: NDJSON's non-blank lines, a JSON array's top-level elements
/// (its commas outside strings and nested values, plus one), or one for anything else. Exact
/// for a valid body; for an invalid one, whatever the decoder then refuses.
pub fn count_events(body: &[u8], ndjson: bool) -> usize {
    if ndjson {
        return body
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count();
    }
    let Some(start) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return 0;
    };
    if body[start] != b'[' {
        return 1;
    }
    let (mut depth, mut commas, mut empty) = (0usize, 0usize, true);
    let mut i = start;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                empty = false;
                i = string_end(body, i + 1);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                empty &= depth == 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                commas += 1;
                empty = false;
            }
            b if !b.is_ascii_whitespace() => empty = false,
            _ => {}
        }
        i += 1;
    }
    if empty {
        0
    } else {
        commas + 1
    }
}

/// The index past the closing quote of a string whose content starts at `i`.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            None => return bytes.len(),
            Some(at) if bytes[i + at] == b'"' => return i + at + 1,
            Some(at) => i += at + 2, // an escape: skip the escaped character
        }
    }
}

/// The number token as text when it does not fit a 64-bit float.
fn out_of_range(token: &[u8]) -> Option<String> {
    // Short plain numbers always fit; only long or exponent forms need a look.
    if token.len() <= 15 && !token.iter().any(|c| matches!(c, b'e' | b'E')) {
        return None;
    }
    let text = std::str::from_utf8(token).unwrap_or("");
    text.parse::<f64>()
        .is_ok_and(f64::is_infinite)
        .then(|| text.chars().take(40).collect())
}

/// The deepest nesting of `{`/`[` in `bytes`, ignoring brackets inside strings.
/// Stops counting (and returns `limit + 1`) as soon as `limit` is exceeded.
pub fn max_nesting_depth(bytes: &[u8], limit: usize) -> usize {
    shape(bytes, limit, usize::MAX).depth
}

/// The first number in `bytes` (outside strings) too large for a 64-bit float, such as
/// `1e999999` or a 400-digit integer: JSON allows it, but no sink can index it, and VRL or a
/// SIEM would fail on it later, far from the client that sent it.
pub fn first_number_out_of_range(bytes: &[u8]) -> Option<String> {
    shape(bytes, usize::MAX, usize::MAX).number_out_of_range
}

#[cfg(test)]
mod tests {
    use super::{count_events, first_number_out_of_range, max_nesting_depth, shape};

    #[test]
    fn counts_events_before_decoding() {
        assert_eq!(count_events(b"{}\n\n  \r\n{}\n{\"a\":\"\\n\"}", true), 3);
        assert_eq!(count_events(b"", true), 0);
        assert_eq!(
            count_events(br#" [ {"a":[1,2],"b":{"c":","}}, {}, {} ] "#, false),
            3
        );
        assert_eq!(count_events(b"[]", false), 0);
        assert_eq!(count_events(b"[ ]", false), 0);
        assert_eq!(count_events(br#"[{}]"#, false), 1);
        assert_eq!(count_events(br#"{"type":"x"}"#, false), 1);
        assert_eq!(count_events(b"  ", false), 0);
        // Garbage still counts something and never panics.
        assert_eq!(count_events(b"[,,", false), 3);
        assert_eq!(count_events(b"[\"", false), 1);
    }

    #[test]
    fn counts_members_of_the_largest_object_outside_strings() {
        let s = shape(
            br#"{"a":1,"b":{"c":2,"d":3,"e":"x:y:z"},"f":[{"g":1}]}"#,
            10,
            10,
        );
        assert_eq!((s.depth, s.most_members), (3, 3));
        let many: String = (0..100).map(|i| format!("\"k{i}\":{i},")).collect();
        let text = format!("{{{}\"end\":0}}", many);
        assert_eq!(shape(text.as_bytes(), 10, 1000).most_members, 101);
        // Stops as soon as the limit is passed.
        assert_eq!(shape(text.as_bytes(), 10, 50).most_members, 51);
        assert_eq!(shape(b"[1,2,3]", 10, 0).most_members, 0);
    }

    #[test]
    fn finds_numbers_past_f64_only_outside_strings() {
        assert_eq!(
            first_number_out_of_range(br#"{"a":1e999999}"#).as_deref(),
            Some("1e999999")
        );
        let long = format!(r#"{{"a":[1,-{}]}}"#, "9".repeat(400));
        assert!(first_number_out_of_range(long.as_bytes())
            .unwrap()
            .starts_with("-999"));
        assert_eq!(
            first_number_out_of_range(br#"{"a":"1e999999","b":1.5e300,"c":-0.0}"#),
            None
        );
        assert_eq!(
            first_number_out_of_range(br#"{"a":18446744073709551616}"#),
            None
        );
    }

    #[test]
    fn counts_objects_and_arrays_not_strings() {
        assert_eq!(max_nesting_depth(br#"{"a":[{"b":"[[[{{"}]}"#, 100), 3);
        assert_eq!(max_nesting_depth(br#""\"[""#, 100), 0);
        assert_eq!(max_nesting_depth(b"1", 100), 0);
    }

    #[test]
    fn stops_past_the_limit() {
        let deep = "[".repeat(10_000);
        assert_eq!(max_nesting_depth(deep.as_bytes(), 64), 65);
    }
}
