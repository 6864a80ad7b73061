//! Reading a TOML table key by key while collecting every error with its key path, so that
//! `validate` can report all mistakes at once instead of stopping at the first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::secret::{self, Secret};
use crate::units;
use crate::ConfigError;

/// Collected errors (`.0`) and warnings: what makes the config invalid, and what is valid but
/// unwise (a short token, say).
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<ConfigError>, pub Warnings);

/// Warnings collected beside the errors.
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.1 .0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// A table being read. Every key read is remembered; [`Obj::finish`] reports the rest as
/// unknown.
pub(crate) struct Obj<'a> {
    pub path: String,
    table: &'a Table,
    seen: Vec<&'a str>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    let key = if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Obj<'a> {
    pub fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Obj {
            path: path.into(),
            table,
            seen: Vec::new(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The table under `key`, without marking it read.
    pub fn table_peek(&self, key: &str) -> Option<&'a Table> {
        self.table.get(key).and_then(toml::Value::as_table)
    }

    /// Whether `key` holds an integer (`Some(true)`), something else (`Some(false)`) or is
    /// absent (`None`): for keys that take a number or a word.
    pub fn holds_integer(&self, key: &str) -> Option<bool> {
        self.table.get(key).map(toml::Value::is_integer)
    }

    /// Whether `key` is present; asking counts as reading it for the drift tests (the parser
    /// asks only for keys it takes, e.g. one of a secret's two forms).
    pub fn has(&self, key: &str) -> bool {
        self.record_requested(key);
        self.table.contains_key(key)
    }

    fn record_requested(&self, _key: &str) {
        #[cfg(test)]
        REQUESTED.with(|r| {
            if let Some(keys) = r.borrow_mut().as_mut() {
                keys.insert(self.key_path(_key));
            }
        });
    }

    pub fn get(&mut self, key: &str) -> Option<&'a Value> {
        self.record_requested(key);
        let (k, v) = self.table.get_key_value(key)?;
        self.seen.push(k.as_str());
        Some(v)
    }

    fn typed<T>(
        &mut self,
        key: &str,
        errs: &mut Errors,
        want: &str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        let r = f(v);
        if r.is_none() {
            errs.push(
                &self.key_path(key),
                format!("expected {want}, found {}", type_name(v)),
            );
        }
        r
    }

    pub fn string(&mut self, key: &str, errs: &mut Errors) -> Option<String> {
        self.typed(key, errs, "a string", |v| v.as_str().map(str::to_string))
    }

    pub fn req_string(&mut self, key: &str, errs: &mut Errors) -> Option<String> {
        if !self.has(key) {
            errs.push(&self.key_path(key), "is required");
            return None;
        }
        let s = self.string(key, errs)?;
        if s.is_empty() {
            errs.push(&self.key_path(key), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(&mut self, key: &str, errs: &mut Errors) -> Option<bool> {
        self.typed(key, errs, "a boolean", Value::as_bool)
    }

    /// A positive integer within `min..=max`.
    pub fn int(&mut self, key: &str, min: u64, max: u64, errs: &mut Errors) -> Option<u64> {
        let n = self.typed(key, errs, "an integer", Value::as_integer)?;
        if n < 0 || (n as u64) < min || (n as u64) > max {
            errs.push(
                &self.key_path(key),
                format!("must be between {min} and {max} (got {n})"),
            );
            return None;
        }
        Some(n as u64)
    }

    /// A duration string such as `"5m"`, within `range` (every duration the gateway takes is
    /// bounded: a zero interval would spin, a century-long one overflow a deadline).
    pub fn duration(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<Duration>,
        errs: &mut Errors,
    ) -> Option<Duration> {
        let s = self.typed(key, errs, "a duration string such as \"5m\"", Value::as_str)?;
        let d = units::parse_duration(s)
            .map_err(|e| errs.push(&self.key_path(key), e))
            .ok()?;
        if !range.contains(&d) {
            errs.push(
                &self.key_path(key),
                format!(
                    "must be between {} and {} (got {s:?})",
                    units::format_duration(*range.start()),
                    units::format_duration(*range.end())
                ),
            );
            return None;
        }
        Some(d)
    }

    /// A size given as a number of bytes or a string such as `"4GiB"`, within `min..=max`.
    pub fn size(&mut self, key: &str, min: u64, max: u64, errs: &mut Errors) -> Option<u64> {
        let path = self.key_path(key);
        let v = self.get(key)?;
        let n = match v {
            Value::Integer(n) if *n >= 0 => *n as u64,
            Value::String(s) => match units::parse_size(s) {
                Ok(n) => n,
                Err(e) => {
                    errs.push(&path, e);
                    return None;
                }
            },
            other => {
                errs.push(
                    &path,
                    format!(
                        "expected a size such as \"1MiB\", found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        if n < min || n > max {
            errs.push(
                &path,
                format!("must be between {min} and {max} bytes (got {n})"),
            );
            return None;
        }
        Some(n)
    }

    pub fn table(&mut self, key: &str, errs: &mut Errors) -> Option<Obj<'a>> {
        let path = self.key_path(key);
        self.typed(key, errs, "a table", Value::as_table)
            .map(|t| Obj::new(path, t))
    }

    /// An array of tables (`[[key]]`), each with its indexed path (`key[0]`).
    pub fn tables(&mut self, key: &str, errs: &mut Errors) -> Vec<Obj<'a>> {
        let path = self.key_path(key);
        let Some(arr) = self.typed(key, errs, "an array of tables", Value::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match v.as_table() {
                Some(t) => out.push(Obj::new(p, t)),
                None => errs.push(&p, format!("expected a table, found {}", type_name(v))),
            }
        }
        out
    }

    pub fn strings(&mut self, key: &str, errs: &mut Errors) -> Option<Vec<String>> {
        let path = self.key_path(key);
        let arr = self.typed(key, errs, "an array of strings", Value::as_array)?;
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => errs.push(
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", type_name(v)),
                ),
            }
        }
        Some(out)
    }

    /// A secret given as `key = "..."`, `key = "${ENV}"` or `key_file = "..."`.
    /// `Ok(None)` when neither key is present.
    pub fn secret(&mut self, key: &str, base: &Path, errs: &mut Errors) -> Option<Secret> {
        let file_key = format!("{key}_file");
        match (self.has(key), self.has(&file_key)) {
            (true, true) => {
                errs.push(
                    &self.key_path(key),
                    format!("give either `{key}` or `{file_key}`, not both"),
                );
                self.get(key);
                self.get(&file_key);
                None
            }
            (true, false) => {
                let v = self.string(key, errs)?;
                secret::resolve_inline(&v)
                    .map_err(|e| errs.push(&self.key_path(key), e))
                    .ok()
            }
            (false, true) => {
                let p = self.path_value(&file_key, base, errs)?;
                secret::read_file(&p)
                    .map_err(|e| errs.push(&self.key_path(&file_key), e))
                    .ok()
            }
            (false, false) => None,
        }
    }

    /// A path, resolved against `base` when relative.
    pub fn path_value(&mut self, key: &str, base: &Path, errs: &mut Errors) -> Option<PathBuf> {
        let s = self.string(key, errs)?;
        if s.is_empty() {
            errs.push(&self.key_path(key), "must not be empty");
            return None;
        }
        Some(resolve_path(base, &s))
    }

    /// The keys of the table.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.table.keys().map(String::as_str)
    }

    /// Treats every key as handled (its errors were reported another way).
    pub fn mark_all_seen(&mut self) {
        self.seen = self.table.keys().map(String::as_str).collect();
    }

    /// Reports every key that was not read as unknown.
    pub fn finish(self, errs: &mut Errors) {
        for key in self.table.keys() {
            if !self.seen.contains(&key.as_str()) {
                errs.push(&join(&self.path, key), "unknown key");
            }
        }
    }
}

pub(crate) fn resolve_path(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
thread_local! {
    /// Every key path the parser asked for on this thread, while recording.
    static REQUESTED: std::cell::RefCell<Option<std::collections::BTreeSet<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// Starts (`true`) or stops (`false`) recording the key paths the parser asks for, present
/// in the TOML or not; stopping returns what was recorded.
#[cfg(test)]
pub(crate) fn record_requested_keys(on: bool) -> std::collections::BTreeSet<String> {
    REQUESTED.with(|r| {
        let mut r = r.borrow_mut();
        let recorded = r.take().unwrap_or_default();
        if on {
            *r = Some(Default::default());
        }
        recorded
    })
}
