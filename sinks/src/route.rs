//! Which events a sink takes, and in what shape: its `tenants`, its VRL `condition` (a runtime
//! error counts as `false`, and is counted) and its `remap` (a runtime error dead-letters the
//! event for this sink, with the VRL error).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use crate::tap::Tap;

use thoth_transform::{RunError, TransformMetrics, VrlProgram};

/// A sink's routing.
#[derive(Clone)]
pub struct Route {
    sink: String,
    tenants: Option<HashSet<String>>,
    condition: Option<Arc<VrlProgram>>,
    remap: Option<Arc<VrlProgram>>,
    metrics: TransformMetrics,
    /// `sink:NAME` watchers of `/v1/tap` see what this route sends.
    tap: Option<(Tap, String)>,
}

/// What the route says of one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'a> {
    /// Not for this sink.
    Skip,
    /// Send this (the event, or its remap).
    Send(Cow<'a, [u8]>),
    /// The remap failed: dead-letter the event with this reason.
    Failed(String),
}

impl Route {
    pub fn new(
        sink: &str,
        tenants: Option<&[String]>,
        condition: Option<Arc<VrlProgram>>,
        remap: Option<Arc<VrlProgram>>,
        metrics: TransformMetrics,
    ) -> Route {
        Route {
            sink: sink.to_string(),
            tenants: tenants.map(|t| t.iter().cloned().collect()),
            condition,
            remap,
            metrics,
            tap: None,
        }
    }

    /// Shows what this route sends to `/v1/tap?stage=sink:NAME` watchers.
    pub fn with_tap(mut self, tap: Tap) -> Route {
        self.tap = Some((tap, format!("sink:{}", self.sink)));
        self
    }

    /// Routes one enriched event of `tenant`.
    pub fn route<'a>(&self, tenant: &str, json: &'a [u8]) -> Routed<'a> {
        let routed = self.decide(tenant, json);
        if let (Some((tap, stage)), Routed::Send(out)) = (&self.tap, &routed) {
            if tap.is_watched() {
                tap.offer(stage, tenant, out);
            }
        }
        routed
    }

    fn decide<'a>(&self, tenant: &str, json: &'a [u8]) -> Routed<'a> {
        if self.tenants.as_ref().is_some_and(|t| !t.contains(tenant)) {
            return Routed::Skip;
        }
        if self.condition.is_none() && self.remap.is_none() {
            return Routed::Send(Cow::Borrowed(json)); // no VRL: no conversion
        }
        // Each program builds only the fields it touches (see `thoth_transform::PathTree`).
        if let Some(condition) = &self.condition {
            let matched = match condition.condition_json(json) {
                Ok(m) => m,
                Err(e) => {
                    self.metrics.errors.with_label_values(&["condition"]).inc();
                    tracing::debug!(sink = %self.sink, error = %e, "condition failed; counts as false");
                    false
                }
            };
            self.metrics
                .routed
                .with_label_values(&[self.sink.as_str(), if matched { "true" } else { "false" }])
                .inc();
            if !matched {
                return Routed::Skip;
            }
        }
        match &self.remap {
            Some(remap) => match remap.remap_json(json) {
                Ok(out) => Routed::Send(Cow::Owned(out)),
                Err(e @ RunError::Input(_)) => Routed::Failed(format!("sinks.{}: {e}", self.sink)),
                Err(e) => {
                    self.metrics.errors.with_label_values(&["remap"]).inc();
                    Routed::Failed(format!("{}: {e}", remap.key()))
                }
            },
            None => Routed::Send(Cow::Borrowed(json)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(src: &str) -> Option<Arc<VrlProgram>> {
        Some(Arc::new(VrlProgram::compile("k", src).unwrap().0))
    }

    #[test]
    fn tenants_condition_and_remap() {
        let r = Route::new(
            "soar",
            Some(&["acme".to_string()]),
            program(".risk == \"critical\""),
            program(". = {\"title\": .reason}"),
            TransformMetrics::unregistered(),
        );
        let critical = br#"{"risk":"critical","reason":"mcp"}"#;
        assert_eq!(r.route("globex", critical), Routed::Skip);
        assert_eq!(r.route("acme", br#"{"risk":"low"}"#), Routed::Skip);
        assert_eq!(
            r.route("acme", critical),
            Routed::Send(Cow::Owned(br#"{"title":"mcp"}"#.to_vec()))
        );
        // A condition that fails at run time counts as false.
        let failing = Route::new(
            "s",
            None,
            program("to_int!(.x) > 1"),
            None,
            TransformMetrics::unregistered(),
        );
        assert_eq!(failing.route("acme", br#"{"x":"nope"}"#), Routed::Skip);
        assert_eq!(
            failing
                .metrics
                .errors
                .with_label_values(&["condition"])
                .get(),
            1
        );
        // A remap that aborts dead-letters with the reason.
        let aborting = Route::new(
            "s",
            None,
            None,
            program("abort"),
            TransformMetrics::unregistered(),
        );
        assert!(
            matches!(aborting.route("acme", critical), Routed::Failed(r) if r.starts_with("k: aborted"))
        );
        // Without VRL the event passes untouched, without conversion.
        let plain = Route::new("s", None, None, None, TransformMetrics::unregistered());
        assert_eq!(
            plain.route("acme", b"{ \"raw\" : 1 }"),
            Routed::Send(Cow::Borrowed(b"{ \"raw\" : 1 }"))
        );
    }
}
