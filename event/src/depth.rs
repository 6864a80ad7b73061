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

#[cfg(test)]
mod tests {
    use super::max_nesting_depth;

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
