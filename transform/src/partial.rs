//! Running a program on only the parts of an event it touches.
//!
//! Building VRL's value tree from a whole event and printing it back costs several times what
//! a typical program does with it. VRL reports at compile time every event path a program
//! queries or assigns (a path-taking function such as `del` compiles its argument as a query,
//! and `get` reports the root), so the event is built only along those paths: a path's last
//! field is built whole, the objects above it hold only the fields on some path. After the
//! run, the output is the input's bytes with each touched member replaced by the program's
//! version (or left out when the program removed it), then the members the program added.
//! Untouched members keep their bytes and their order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use vrl::compiler::Program;
use vrl::path::{OwnedSegment, PathPrefix};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::RunError;

/// The event fields a program touches, as a tree of field names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PathTree {
    /// The member is needed whole (a path ends here, or continues with an array index).
    whole: bool,
    children: BTreeMap<String, PathTree>,
}

impl PathTree {
    /// The paths `program` queries or assigns; `None` when it may touch the event as a whole
    /// (`.` itself, or a path starting with an index).
    pub fn of(program: &Program) -> Option<PathTree> {
        let info = program.info();
        let mut root = PathTree::default();
        for path in info.target_queries.iter().chain(&info.target_assignments) {
            if path.prefix != PathPrefix::Event {
                continue;
            }
            let mut node = &mut root;
            let mut fields = 0;
            for segment in &path.path.segments {
                match segment {
                    OwnedSegment::Field(name) => {
                        node = node.children.entry(name.to_string()).or_default();
                        fields += 1;
                    }
                    OwnedSegment::Index(_) => break,
                }
            }
            if fields == 0 {
                return None;
            }
            node.whole = true;
        }
        Some(root)
    }

    /// The top-level fields, sorted.
    pub fn top_level(&self) -> Vec<String> {
        self.children.keys().cloned().collect()
    }

    fn is_leaf(&self) -> bool {
        self.whole || self.children.is_empty()
    }
}

/// The members of a JSON object, borrowed, in order.
type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

fn members(json: &str) -> Result<Members<'_>, RunError> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Members<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(24));
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                out.push((key, map.next_value::<&'de RawValue>()?));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let out = (&mut de)
        .deserialize_map(V)
        .map_err(|e| RunError::Input(e.to_string()))?;
    de.end().map_err(|e| RunError::Input(e.to_string()))?;
    Ok(out)
}

fn whole_value(raw: &RawValue) -> Result<Value, RunError> {
    serde_json::from_str(raw.get()).map_err(|e| RunError::Input(e.to_string()))
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The VRL object of `members`, built only along `tree`.
fn build(members: &Members<'_>, tree: &PathTree) -> Result<Value, RunError> {
    let mut object = ObjectMap::new();
    for (key, raw) in members {
        let Some(node) = tree.children.get(key.as_ref()) else {
            continue;
        };
        let value = if node.is_leaf() || !is_object(raw) {
            whole_value(raw)?
        } else {
            build(&members_of(raw)?, node)?
        };
        object.insert(KeyString::from(key.as_ref()), value);
    }
    Ok(Value::Object(object))
}

fn members_of(raw: &RawValue) -> Result<Members<'_>, RunError> {
    members(raw.get())
}

/// The event `json` (an object) built along `tree`, with its members for [`write_merged`].
pub(crate) fn partial_event<'a>(
    json: &'a [u8],
    tree: &PathTree,
) -> Result<(Members<'a>, Value), RunError> {
    let text = std::str::from_utf8(json).map_err(|e| RunError::Input(e.to_string()))?;
    if !text.trim_start().starts_with('{') {
        return Err(RunError::Input("not an object".into()));
    }
    let members = members(text)?;
    let value = build(&members, tree)?;
    Ok((members, value))
}

/// Writes the original `members` with the touched ones taken from `output` (the program's
/// version of the same object), then the fields `output` added.
pub(crate) fn write_merged(
    out: &mut Vec<u8>,
    members: &Members<'_>,
    tree: &PathTree,
    output: &ObjectMap,
) -> Result<(), RunError> {
    out.push(b'{');
    let mut first = true;
    let mut written: Vec<&str> = Vec::new();
    for (key, raw) in members {
        let Some(node) = tree.children.get(key.as_ref()) else {
            separator(out, &mut first);
            write_key(out, key);
            out.extend_from_slice(raw.get().as_bytes());
            continue;
        };
        if written.contains(&key.as_ref()) {
            continue; // a repeated key: VRL kept one value, and it is written once
        }
        written.push(key.as_ref());
        let Some(value) = output.get(key.as_ref()) else {
            continue; // removed by the program
        };
        separator(out, &mut first);
        write_key(out, key);
        match value {
            Value::Object(inner) if !node.is_leaf() && is_object(raw) => {
                write_merged(out, &members_of(raw)?, node, inner)?
            }
            other => write_value(out, other),
        }
    }
    for (key, value) in output {
        if members.iter().any(|(k, _)| k.as_ref() == key.as_str()) {
            continue;
        }
        separator(out, &mut first);
        write_key(out, key.as_str());
        write_value(out, value);
    }
    out.push(b'}');
    Ok(())
}

fn separator(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
    out.push(b':');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(&mut *out, value).expect("a VRL value serializes to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VrlProgram;

    fn tree(src: &str) -> Option<PathTree> {
        PathTree::of(VrlProgram::compile("t", src).unwrap().0.program())
    }

    #[test]
    fn the_tree_holds_queried_and_assigned_paths() {
        let t = tree(".a = .b.c\ndel(.d)\n.e[0] = 1").unwrap();
        assert_eq!(t.top_level(), ["a", "b", "d", "e"]);
        assert!(t.children["a"].whole && t.children["d"].whole && t.children["e"].whole);
        assert!(!t.children["b"].whole);
        assert!(t.children["b"].children["c"].whole);
    }

    #[test]
    fn the_root_or_a_leading_index_means_the_whole_event() {
        assert_eq!(tree("keys(.)"), None);
        assert_eq!(tree(". = {}"), None);
        assert_eq!(tree(".x = get!(., [\"a\"])"), None);
        assert_eq!(tree("del(.)"), None);
    }

    #[test]
    fn only_the_paths_are_built() {
        let t = tree(".x = .b.c").unwrap();
        let json = br#"{"a":1,"b":{"c":{"d":[1,2]},"e":"skipped"},"f":true}"#;
        let (_, value) = partial_event(json, &t).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"b":{"c":{"d":[1,2]}}}"#
        );
    }
}

#[cfg(test)]
mod equivalence {
    use crate::{json_to_value, VrlProgram};

    /// Programs that touch the event in every way a path can: reads, nested writes, deletes,
    /// writes below non-objects, whole-member replacement, merges and iteration.
    const PROGRAMS: &[&str] = &[
        ".severity_score = if .risk == \"critical\" { 4 } else { 1 }\n.fleet = .context.fleet.id\n.owner = downcase(string(.context.endpoint.owner) ?? \"\")\ndel(.proxy_version)\n.gateway = \"thoth\"",
        ".context.fleet.id = \"moved\"",
        ".context.endpoint.extra.deep = [1, 2]",
        "del(.context.endpoint.owner)",
        "del(.context)",
        ".context = {\"replaced\": true}",
        ".context = object(.context) ?? {}\n.context |= {\"merged\": .risk}",
        ".tags[1] = \"x\"",
        "c = object(.context) ?? {}\n.n = length(keys(c))",
        ".new.nested.path = 1\n.risk = null",
        "del(.context.fleet)\n.context.fleet.id = 7",
        ".copy = .context\n.context.endpoint = \"flat\"",
        ".x = .risk.sub",
        "if exists(.tags) { .count = length(.tags) ?? 0 }",
        ".a = 1\n. = merge(., {\"b\": 2})",
        "abort",
    ];

    const EVENTS: &[&str] = &[
        r#"{"type":"decision","risk":"critical","proxy_version":"1.2","n":1.50e3,"context":{"fleet":{"id":"eng","name":"E"},"endpoint":{"owner":"Ada","id":"ep"}},"tags":["a","b"]}"#,
        r#"{"type":"decision","risk":"low","context":"a string"}"#,
        r#"{"type":"checkin","context":{"fleet":null,"endpoint":{"owner":5}},"zzz":{"k":[{"x":1}]}}"#,
        r#"{"risk":{"sub":"deep"},"context":{"endpoint":[1,2,3]},"tags":"not an array"}"#,
        r#"{}"#,
    ];

    fn full(program: &VrlProgram, json: &[u8]) -> Result<serde_json::Value, String> {
        let (event, _) = program
            .run(json_to_value(json).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(&event).unwrap())
    }

    fn partial(program: &VrlProgram, json: &[u8]) -> Result<serde_json::Value, String> {
        let out = program.remap_json(json).map_err(|e| e.to_string())?;
        Ok(serde_json::from_slice(&out).expect("the merged output is valid JSON"))
    }

    #[test]
    fn partial_remap_gives_what_a_full_conversion_gives() {
        for source in PROGRAMS {
            let (program, _) = VrlProgram::compile("t", source).unwrap();
            for event in EVENTS {
                assert_eq!(
                    partial(&program, event.as_bytes()),
                    full(&program, event.as_bytes()),
                    "program {source:?} on {event}"
                );
            }
        }
    }

    #[test]
    fn untouched_members_keep_their_bytes_and_order() {
        let (program, _) = VrlProgram::compile("t", ".b = 2\ndel(.c)").unwrap();
        let out = program
            .remap_json(br#"{"z":1.50e3,"c":0,"a":{"x":[1, 2]},"b":1}"#)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1.50e3,"a":{"x":[1, 2]},"b":2}"#
        );
    }
}
