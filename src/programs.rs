//! Every VRL program of a config, compiled once: the global transform, each sink's condition
//! and remap, and the `[[tests]]` assertions.

use std::collections::HashMap;
use std::sync::Arc;

use thoth_config::{Config, SinkConfig, VrlSource};
use thoth_sinks::Route;
use thoth_transform::{TransformMetrics, VrlDiagnostic, VrlProgram};

/// The compiled programs.
#[derive(Default)]
pub struct Programs {
    pub global: Option<Arc<VrlProgram>>,
    pub conditions: HashMap<String, Arc<VrlProgram>>,
    pub remaps: HashMap<String, Arc<VrlProgram>>,
    /// Test assertions by their config key.
    pub assertions: HashMap<String, Arc<VrlProgram>>,
    pub warnings: Vec<VrlDiagnostic>,
}

impl Programs {
    /// Compiles everything; `Err` lists every compile error of every program.
    pub fn compile(config: &Config) -> Result<Programs, Vec<VrlDiagnostic>> {
        let mut programs = Programs::default();
        let mut errors = Vec::new();
        let mut compile =
            |source: &VrlSource| match VrlProgram::compile(&source.key, &source.source) {
                Ok((p, warnings)) => {
                    programs.warnings.extend(warnings);
                    Some(Arc::new(p))
                }
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
        let global = config.transform.as_ref().and_then(&mut compile);
        let mut conditions = HashMap::new();
        let mut remaps = HashMap::new();
        for (name, sink) in &config.sinks {
            if let Some(p) = sink.condition.as_ref().and_then(&mut compile) {
                conditions.insert(name.clone(), p);
            }
            if let Some(p) = sink.remap.as_ref().and_then(&mut compile) {
                remaps.insert(name.clone(), p);
            }
        }
        let mut assertions = HashMap::new();
        for test in &config.tests {
            let sources = test
                .expect
                .iter()
                .chain(test.expect_remap.iter().map(|(_, s)| s));
            for source in sources {
                if let Some(p) = compile(source) {
                    assertions.insert(source.key.clone(), p);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        programs.global = global;
        programs.conditions = conditions;
        programs.remaps = remaps;
        programs.assertions = assertions;
        Ok(programs)
    }

    /// The routing of a sink: its tenants, condition and remap.
    pub fn route(&self, sink: &SinkConfig, metrics: &TransformMetrics) -> Route {
        Route::new(
            &sink.name,
            sink.tenants.as_deref(),
            self.conditions.get(&sink.name).cloned(),
            self.remaps.get(&sink.name).cloned(),
            metrics.clone(),
        )
    }
}
