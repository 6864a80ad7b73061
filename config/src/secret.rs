//! Secrets: never printed. Given inline, as `${ENV_VAR}`, or from a file (`KEY_file`).

use std::fmt;

/// A secret value. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Resolves an inline value: `${NAME}` reads the environment variable NAME.
pub fn resolve_inline(value: &str) -> Result<Secret, String> {
    match value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(var) => match std::env::var(var) {
            Ok(v) if v.is_empty() => Err(format!("environment variable {var} is empty")),
            Ok(v) => Ok(Secret(v)),
            Err(_) => Err(format!("environment variable {var} is not set")),
        },
        None if value.is_empty() => Err("must not be empty".into()),
        None => Ok(Secret(value.to_string())),
    }
}

/// Reads a secret file; one trailing newline is dropped.
pub fn read_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_and_resolved() {
        let s = resolve_inline("hunter2").unwrap();
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
        std::env::set_var("THOTH_TEST_SECRET_X", "from-env");
        assert_eq!(
            resolve_inline("${THOTH_TEST_SECRET_X}").unwrap().expose(),
            "from-env"
        );
        assert!(resolve_inline("${THOTH_TEST_SECRET_UNSET_Y}")
            .unwrap_err()
            .contains("THOTH_TEST_SECRET_UNSET_Y is not set"));
        // An empty secret is never a secret: inline or from an empty variable.
        std::env::set_var("THOTH_TEST_SECRET_EMPTY_Z", "");
        assert_eq!(
            resolve_inline("${THOTH_TEST_SECRET_EMPTY_Z}").unwrap_err(),
            "environment variable THOTH_TEST_SECRET_EMPTY_Z is empty"
        );
        assert_eq!(resolve_inline("").unwrap_err(), "must not be empty");
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(read_file(&p).unwrap().expose(), "abc");
        std::fs::write(&p, "").unwrap();
        assert!(read_file(&p).unwrap_err().contains("is empty"));
        assert!(read_file(&dir.path().join("missing")).is_err());
    }
}
