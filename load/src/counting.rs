//! Counting the events in a sink's request body without parsing them: the receivers must
//! cost far less than the forwarder they measure.

/// The number of top-level JSON objects in a concatenation (Splunk HEC's event body:
/// `{...}{...}`, with or without whitespace between). Strings are skipped with their escapes,
/// so braces inside values do not count. Errors name the byte offset of the problem.
pub fn count_concatenated_objects(body: &[u8]) -> Result<usize, String> {
    let mut count = 0;
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                if i >= body.len() {
                    return Err("unterminated string at the end of the body".into());
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced `{}` at byte {i}", body[i] as char))?;
                if depth == 0 {
                    count += 1;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {}
            other if depth == 0 => {
                return Err(format!(
                    "`{}` outside an event object at byte {i}",
                    other as char
                ));
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return Err("the body ends inside an event object".into());
    }
    Ok(count)
}

/// The number of documents in an Elasticsearch `_bulk` body: action and source lines alternate
/// (create/index), so documents are half the non-empty lines.
pub fn count_bulk_documents(body: &[u8]) -> Result<usize, String> {
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err("a _bulk body must end with a newline".into());
    }
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    if lines % 2 != 0 {
        return Err(format!(
            "{lines} lines: every action line needs its document line"
        ));
    }
    Ok(lines / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hec_bodies_count_objects_not_braces_in_strings() {
        let body = br#"{"time":1,"event":{"a":"}{\"}"}}{"time":2,"event":{"b":[1,{}]}}
{"time":3,"event":{}}"#;
        assert_eq!(count_concatenated_objects(body), Ok(3));
        assert_eq!(count_concatenated_objects(b""), Ok(0));
        assert!(count_concatenated_objects(br#"{"a":1}}"#)
            .unwrap_err()
            .contains("unbalanced"));
        assert!(count_concatenated_objects(br#"{"a":"#)
            .unwrap_err()
            .contains("inside"));
        assert!(count_concatenated_objects(br#"{"a":"x"#)
            .unwrap_err()
            .contains("unterminated"));
        assert!(count_concatenated_objects(br#"x{}"#)
            .unwrap_err()
            .contains("byte 0"));
    }

    #[test]
    fn bulk_bodies_count_action_and_document_pairs() {
        let body = b"{\"create\":{}}\n{\"a\":1}\n{\"create\":{}}\n{\"a\":2}\n";
        assert_eq!(count_bulk_documents(body), Ok(2));
        assert!(count_bulk_documents(b"{\"create\":{}}\n")
            .unwrap_err()
            .contains("1 lines"));
        assert!(count_bulk_documents(b"{\"create\":{}}\n{}")
            .unwrap_err()
            .contains("newline"));
    }
}
