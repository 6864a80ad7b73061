//! `[[tests]]`: VRL and routing unit tests.

use super::*;

pub(super) fn read_tests(
    root: &mut Obj,
    sinks: &BTreeMap<String, SinkConfig>,
    errs: &mut Errors,
) -> Vec<ConfigTest> {
    let mut out = Vec::new();
    for mut t in root.tables("tests", errs) {
        let name = t.req_string("name", errs);
        let input = match t.get("input") {
            Some(v @ toml::Value::Table(_)) => serde_json::to_value(v).ok(),
            Some(_) => {
                errs.push(&t.key_path("input"), "expected a table (an event)");
                None
            }
            None => {
                errs.push(&t.key_path("input"), "is required (the event to test)");
                None
            }
        };
        let expect_sinks = t.strings("expect_sinks", errs);
        if let Some(list) = &expect_sinks {
            for (i, s) in list.iter().enumerate() {
                if !sinks.contains_key(s) {
                    errs.push(
                        &format!("{}[{i}]", t.key_path("expect_sinks")),
                        format!("no sink named {s:?}"),
                    );
                }
            }
        }
        let expect = t.string("expect", errs).map(|source| VrlSource {
            key: t.key_path("expect"),
            source,
        });
        let mut expect_remap = Vec::new();
        if let Some(mut r) = t.table("expect_remap", errs) {
            let keys: Vec<String> = r.keys().map(str::to_string).collect();
            for sink in keys {
                let key = r.key_path(&sink);
                match sinks.get(&sink) {
                    Some(s) if s.remap.is_none() => {
                        errs.push(&key, format!("sink {sink:?} has no remap"));
                        r.get(&sink);
                    }
                    None => {
                        errs.push(&key, format!("no sink named {sink:?}"));
                        r.get(&sink);
                    }
                    Some(_) => {
                        if let Some(source) = r.string(&sink, errs) {
                            expect_remap.push((sink, VrlSource { key, source }));
                        }
                    }
                }
            }
            r.finish(errs);
        }
        if expect_sinks.is_none() && expect.is_none() && expect_remap.is_empty() {
            errs.push(&t.path, "a test needs expect_sinks, expect or expect_remap");
        }
        let path = t.path.clone();
        t.finish(errs);
        if let (Some(name), Some(input)) = (name, input) {
            out.push(ConfigTest {
                name,
                path,
                input,
                expect_sinks,
                expect,
                expect_remap,
            });
        }
    }
    out
}
