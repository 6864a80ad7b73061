//! JSON nesting depth and number range, measured in one pass without parsing, so that a
//! hostile body is refused before the parser recurses into it.

/// What one pass over a JSON text found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of `{`/`[` outside strings; `limit + 1` when the pass stopped there.
    pub depth: usize,
    /// The first number too large for a 64-bit float (its first 40 characters).
    pub number_out_of_range: Option<String>,
}

/// Measures `bytes`, stopping as soon as the nesting exceeds `limit`.
pub fn shape(bytes: &[u8], limit: usize) -> Shape {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut number_out_of_range = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_end(bytes, i + 1);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    max = depth;
                    if max > limit {
                        break;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
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
        number_out_of_range,
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
    shape(bytes, limit).depth
}

/// The first number in `bytes` (outside strings) too large for a 64-bit float, such as
/// `1e999999` or a 400-digit integer: JSON allows it, but no sink can index it, and VRL or a
/// SIEM would fail on it later, far from the client that sent it.
pub fn first_number_out_of_range(bytes: &[u8]) -> Option<String> {
    shape(bytes, usize::MAX).number_out_of_range
}

#[cfg(test)]
mod tests {
    use super::{first_number_out_of_range, max_nesting_depth};

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
