//! JSON nesting depth, measured without parsing, so that a hostile body is refused before the
//! parser recurses into it.

/// The deepest nesting of `{`/`[` in `bytes`, ignoring brackets inside strings.
/// Stops counting (and returns `limit + 1`) as soon as `limit` is exceeded.
pub fn max_nesting_depth(bytes: &[u8], limit: usize) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    max = depth;
                    if max > limit {
                        return max;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The first number in `bytes` (outside strings) too large for a 64-bit float, such as
/// `1e999999` or a 400-digit integer: JSON allows it, but no sink can index it, and VRL or a
/// SIEM would fail on it later, far from the client that sent it.
pub fn first_number_out_of_range(bytes: &[u8]) -> Option<String> {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = &bytes[start..i];
            // Short plain numbers always fit; only long or exponent forms need a look.
            if token.len() > 15 || token.iter().any(|c| matches!(c, b'e' | b'E')) {
                let text = std::str::from_utf8(token).unwrap_or("");
                if text.parse::<f64>().is_ok_and(f64::is_infinite) {
                    return Some(text.chars().take(40).collect());
                }
            }
            continue;
        }
        i += 1;
    }
    None
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
