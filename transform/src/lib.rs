//! VRL (Vector Remap Language) programs: the global `[transform]`, per-sink `condition` and
//! `remap`, and the assertions of config `[[tests]]`.
//!
//! Programs are compiled once at config load and shared by every worker (a compiled
//! [`Program`](vrl::compiler::Program) is immutable); each thread runs them with its own
//! runtime. The stdlib is VRL's, less what has no place in a forwarder: no network
//! (`http_request`, `dns_lookup`, `reverse_dns`), no environment (`get_env_var`) and no
//! system or file functions (`get_hostname`, `get_timezone_name`, `parse_etld`,
//! `encode_proto`, `parse_proto`, `validate_json_schema`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use thoth_event::Layout;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{Function, Program, TargetValue, TimeZone};
use vrl::diagnostic::{Diagnostic, DiagnosticList, Formatter, Severity};
use vrl::value::{Secrets, Value};

pub use partial::PathTree;
pub use vrl::value::Value as VrlValue;

mod partial;

fn functions() -> &'static [Box<dyn Function>] {
    static FUNCTIONS: OnceLock<Vec<Box<dyn Function>>> = OnceLock::new();
    FUNCTIONS.get_or_init(vrl::stdlib::all)
}

thread_local! {
    static RUNTIME: RefCell<Runtime> = RefCell::new(Runtime::default());
}

/// A compile error or warning, located in the program's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrlDiagnostic {
    /// The config key holding the program (e.g. `sinks.soar.remap`).
    pub key: String,
    /// 1-based, in the program's source.
    pub line: usize,
    pub column: usize,
    pub error: bool,
    pub code: usize,
    pub message: String,
    /// VRL's own rendering, with the source excerpt and notes.
    pub rendered: String,
}

impl std::fmt::Display for VrlDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: line {}, column {}: {}[E{:03}]: {}",
            self.key,
            self.line,
            self.column,
            if self.error { "error" } else { "warning" },
            self.code,
            self.message
        )
    }
}

/// Why a program did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// `abort` was called.
    #[error("aborted: {0}")]
    Abort(String),
    /// A runtime error (e.g. a failed assertion).
    #[error("{0}")]
    Error(String),
    /// The event is not a JSON object the program can run on.
    #[error("the event is not a JSON object: {0}")]
    Input(String),
}

/// A compiled VRL program.
pub struct VrlProgram {
    key: String,
    program: Program,
    /// The top-level fields of `touched`, for [`VrlProgram::reads`].
    reads: Option<Vec<String>>,
    /// The paths the program queries or assigns; `None` when it may touch the whole event.
    touched: Option<PathTree>,
}

impl std::fmt::Debug for VrlProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrlProgram")
            .field("key", &self.key)
            .finish()
    }
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn diagnostics(key: &str, source: &str, list: DiagnosticList) -> Vec<VrlDiagnostic> {
    let list: Vec<Diagnostic> = list.into_iter().collect();
    list.iter()
        .map(|d| {
            let span = d
                .labels
                .iter()
                .find(|l| l.primary)
                .or_else(|| d.labels.first())
                .map(|l| l.span);
            let (line, column) = span.map_or((1, 1), |s| line_column(source, s.start()));
            VrlDiagnostic {
                key: key.to_string(),
                line,
                column,
                error: matches!(d.severity, Severity::Error | Severity::Bug),
                code: d.code,
                message: d.message.clone(),
                rendered: Formatter::new(source, vec![d.clone()]).to_string(),
            }
        })
        .collect()
}

impl VrlProgram {
    /// Compiles `source` (found at config key `key`). `Ok` carries VRL's warnings.
    pub fn compile(
        key: &str,
        source: &str,
    ) -> Result<(VrlProgram, Vec<VrlDiagnostic>), Vec<VrlDiagnostic>> {
        match vrl::compiler::compile(source, functions()) {
            Ok(result) => {
                let touched = PathTree::of(&result.program);
                Ok((
                    VrlProgram {
                        key: key.to_string(),
                        reads: touched.as_ref().map(PathTree::top_level),
                        touched,
                        program: result.program,
                    },
                    diagnostics(key, source, result.warnings),
                ))
            }
            Err(list) => Err(diagnostics(key, source, list)),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    #[cfg(test)]
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Runs the program on `event`: returns the event as the program left it, and the value of
    /// its last expression.
    pub fn run(&self, event: Value) -> Result<(Value, Value), RunError> {
        let mut target = TargetValue {
            value: event,
            metadata: Value::Object(BTreeMap::new()),
            secrets: Secrets::default(),
        };
        let result = RUNTIME.with(|rt| {
            let mut rt = rt.borrow_mut();
            let r = rt.resolve(&mut target, &self.program, &TimeZone::default());
            rt.clear();
            r
        });
        match result {
            Ok(value) => Ok((target.value, value)),
            Err(Terminate::Abort(e)) => Err(RunError::Abort(e.to_string())),
            Err(Terminate::Error(e)) => Err(RunError::Error(e.to_string())),
            Err(other) => Err(RunError::Error(other.to_string())),
        }
    }

    /// Runs the program on a JSON event and returns the resulting event as JSON. Only the
    /// paths the program touches are converted to VRL values and back; the other members keep
    /// their bytes and order (see [`PathTree`]).
    pub fn remap_json(&self, json: &[u8]) -> Result<Vec<u8>, RunError> {
        let mut out = Vec::with_capacity(json.len() + 64);
        self.remap_json_into(json, &mut out)?;
        Ok(out)
    }

    /// [`remap_json`](Self::remap_json) appending to `out`; on an error `out` is unchanged.
    pub fn remap_json_into(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), RunError> {
        self.remap(json, None, out, &mut Layout::default())
    }

    /// [`remap_json_into`](Self::remap_json_into) for an event whose top-level members
    /// `layout` recorded (they are not scanned again); `out_layout` records the output's
    /// members, or is left empty when the program rebuilt the event as a whole.
    pub fn remap_laid_out_into(
        &self,
        json: &[u8],
        layout: &Layout,
        out: &mut Vec<u8>,
        out_layout: &mut Layout,
    ) -> Result<(), RunError> {
        self.remap(json, Some(layout), out, out_layout)
    }

    fn remap(
        &self,
        json: &[u8],
        layout: Option<&Layout>,
        out: &mut Vec<u8>,
        out_layout: &mut Layout,
    ) -> Result<(), RunError> {
        let Some(tree) = &self.touched else {
            let (event, _) = self.run(json_to_value(json)?)?;
            out_layout.clear();
            serde_json::to_writer(&mut *out, &event).expect("a VRL value serializes to JSON");
            return Ok(());
        };
        let mut partial = partial::partial_event(json, layout, tree)?;
        let value = std::mem::replace(&mut partial.value, Value::Null);
        let (event, _) = self.run(value)?;
        let Value::Object(output) = &event else {
            return Err(RunError::Error(
                "the program left the event not an object".into(),
            ));
        };
        partial.write_merged(out, output, out_layout);
        Ok(())
    }

    /// Runs a condition on a JSON event, building only the fields it reads.
    pub fn condition_json(&self, json: &[u8]) -> Result<bool, RunError> {
        let value = match &self.touched {
            Some(tree) => partial::partial_event(json, None, tree)?.value,
            None => json_to_value(json)?,
        };
        self.condition(value)
    }

    /// The top-level fields the program reads or assigns (`None`: possibly all).
    pub fn reads(&self) -> Option<&[String]> {
        self.reads.as_deref()
    }

    /// Runs a condition: `true` only when the program returns the boolean `true`.
    pub fn condition(&self, event: Value) -> Result<bool, RunError> {
        match self.run(event)? {
            (_, Value::Boolean(b)) => Ok(b),
            (_, other) => Err(RunError::Error(format!(
                "a condition must return a boolean, this one returned {}",
                other.kind()
            ))),
        }
    }
}

/// Transform metrics, shared by the global transform and every sink.
#[derive(Clone)]
pub struct TransformMetrics {
    /// `thoth_transform_errors_total{stage}`: `global`, `condition`, `remap`.
    pub errors: prometheus::IntCounterVec,
    /// `thoth_route_events_total{sink,matched}`: condition results per sink.
    pub routed: prometheus::IntCounterVec,
}

impl TransformMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "thoth_transform_errors_total",
                "VRL runtime errors and aborts, by stage (global, condition, remap).",
            ),
            &["stage"],
        )?;
        let routed = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "thoth_route_events_total",
                "Events a sink's condition matched (true) or not (false).",
            ),
            &["sink", "matched"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(routed.clone()))?;
        Ok(TransformMetrics { errors, routed })
    }

    /// Metrics registered nowhere (tests, one-shot commands).
    pub fn unregistered() -> Self {
        TransformMetrics::new(&prometheus::Registry::new()).expect("fresh registry")
    }
}

/// JSON to a VRL value.
pub fn json_to_value(json: &[u8]) -> Result<Value, RunError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| RunError::Input(e.to_string()))?;
    if !value.is_object() {
        return Err(RunError::Input("not an object".into()));
    }
    Ok(value)
}

/// A VRL value as JSON (timestamps as RFC 3339 strings, bytes as UTF-8 strings).
pub fn value_to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a VRL value serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &[u8] = br#"{"type":"decision","risk":"critical","tenant_id":"acme","context":{"fleet":{"id":"eng"}}}"#;

    #[test]
    fn remap_adds_and_removes_fields() {
        let (p, warnings) = VrlProgram::compile(
            "transform.source",
            ".severity_score = if .risk == \"critical\" { 4 } else { 1 }\ndel(.tenant_id)",
        )
        .unwrap();
        assert!(warnings.is_empty());
        let out: serde_json::Value = serde_json::from_slice(&p.remap_json(EVENT).unwrap()).unwrap();
        assert_eq!(out["severity_score"], 4);
        assert!(out.get("tenant_id").is_none());
        assert_eq!(out["context"]["fleet"]["id"], "eng");
    }

    #[test]
    fn conditions_must_be_boolean() {
        let (yes, _) = VrlProgram::compile("c", ".risk == \"critical\"").unwrap();
        assert_eq!(yes.condition(json_to_value(EVENT).unwrap()), Ok(true));
        let (not_bool, _) = VrlProgram::compile("c", ".risk").unwrap();
        assert!(not_bool.condition(json_to_value(EVENT).unwrap()).is_err());
    }

    #[test]
    fn abort_and_assertions_are_errors_with_vrl_text() {
        let (p, _) = VrlProgram::compile("t", "abort").unwrap();
        assert!(matches!(p.remap_json(EVENT), Err(RunError::Abort(_))));
        let (p, _) = VrlProgram::compile("t", "assert_eq!(.context.fleet.id, \"ops\")").unwrap();
        let err = p
            .run(json_to_value(EVENT).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("assertion failed"), "{err}");
    }

    #[test]
    fn compile_errors_carry_line_and_column() {
        let errs =
            VrlProgram::compile("sinks.soar.remap", ".a = 1\n.b = upcase(.missing)\n").unwrap_err();
        let e = &errs[0];
        assert_eq!(e.key, "sinks.soar.remap");
        assert!(e.error);
        assert_eq!((e.line, e.column), (2, 6), "{e}");
        assert!(e.rendered.contains("upcase"), "{}", e.rendered);
        let syntax = VrlProgram::compile("transform.source", ".a = = 1").unwrap_err();
        assert_eq!(syntax[0].line, 1);
        assert!(syntax[0]
            .to_string()
            .starts_with("transform.source: line 1, column "));
    }

    #[test]
    fn conditions_build_only_the_fields_they_read() {
        let (p, _) =
            VrlProgram::compile("c", ".risk == \"critical\" && .context.fleet.id == \"eng\"")
                .unwrap();
        assert_eq!(
            p.reads(),
            Some(&["context".to_string(), "risk".to_string()][..])
        );
        assert_eq!(p.condition_json(EVENT), Ok(true));
        let (whole, _) = VrlProgram::compile("c", "length(keys(.)) > 2").unwrap();
        assert_eq!(whole.reads(), None);
        assert_eq!(whole.condition_json(EVENT), Ok(true));
        let (missing, _) = VrlProgram::compile("c", "exists(.nope)").unwrap();
        assert_eq!(missing.condition_json(EVENT), Ok(false));
    }

    #[test]
    fn unhandled_fallible_expressions_are_reported_as_vrl_does() {
        let errs = VrlProgram::compile("sinks.s.remap", ".x = parse_json(.msg)").unwrap_err();
        assert_eq!(errs[0].code, 103, "{}", errs[0].rendered);
    }

    #[test]
    fn excluded_functions_do_not_compile() {
        for f in [
            "get_env_var(\"HOME\")",
            "get_hostname()",
            "http_request(\"http://x\")",
        ] {
            assert!(
                VrlProgram::compile("t", f).is_err(),
                "{f} should not be available"
            );
        }
    }
}
